"""Tiny seeded audio and video denoisers and pipelines for the audio/video plugin's tests.

Every transformer has 2 blocks of 2 heads of 8 channels; videos are 2 latent frames of 4x4
(or 2x2 tokens after patching); audio latents are 8 long. Pipelines get no text encoder:
they are called with prompt embeddings. The UNets come from :mod:`tests.unet_models`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

HEADS, HEAD_DIM = 2, 8
WIDTH = HEADS * HEAD_DIM
TEXT_WIDTH = 16
"""Width of every made-up text embedding."""


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return build().eval()


# --- video and audio transformers -----------------------------------------------------------


def _build(class_name: str, defaults: dict[str, Any], config: dict[str, Any], seed: int = 0) -> nn.Module:
    """``diffusers.<class_name>`` from ``defaults`` updated with ``config``, seeded, in eval mode."""
    import diffusers

    return seeded(lambda: getattr(diffusers, class_name)(**{**defaults, **config}), seed)


HEAD_CONFIG = {"num_attention_heads": HEADS, "attention_head_dim": HEAD_DIM}
VIDEO_CHANNELS = {"in_channels": 4, "out_channels": 4}


def tiny_cogvideox(**config: Any) -> nn.Module:
    """CogVideoX: attention over text and video tokens together; a 4x4 latent, 6 text tokens."""
    defaults = {
        **HEAD_CONFIG,
        **VIDEO_CHANNELS,
        "time_embed_dim": WIDTH,
        "text_embed_dim": TEXT_WIDTH,
        "num_layers": 2,
        "sample_width": 4,
        "sample_height": 4,
        "sample_frames": 5,
        "patch_size": 2,
        "max_text_seq_length": 6,
    }
    return _build("CogVideoXTransformer3DModel", defaults, config)


def tiny_wan(seed: int = 0, **config: Any) -> nn.Module:
    """Wan: self-attention over the video, cross attention to the text, (1, 2, 2) patches."""
    defaults = {
        **HEAD_CONFIG,
        **VIDEO_CHANNELS,
        "patch_size": (1, 2, 2),
        "text_dim": TEXT_WIDTH,
        "freq_dim": WIDTH,
        "ffn_dim": 2 * WIDTH,
        "num_layers": 2,
        "rope_max_seq_len": 32,
    }
    return _build("WanTransformer3DModel", defaults, config, seed)


def tiny_ltx(**config: Any) -> nn.Module:
    """LTX-Video: self-attention and cross attention on packed 1x1x1 patches."""
    defaults = {
        **HEAD_CONFIG,
        **VIDEO_CHANNELS,
        "cross_attention_dim": WIDTH,
        "num_layers": 2,
        "caption_channels": TEXT_WIDTH,
    }
    return _build("LTXVideoTransformer3DModel", defaults, config)


def tiny_hunyuan_video(**config: Any) -> nn.Module:
    """HunyuanVideo: one dual-stream and one single-stream block, a one-block text refiner."""
    defaults = {
        **HEAD_CONFIG,
        **VIDEO_CHANNELS,
        "num_layers": 1,
        "num_single_layers": 1,
        "num_refiner_layers": 1,
        "patch_size": 2,
        "text_embed_dim": TEXT_WIDTH,
        "pooled_projection_dim": 8,
        "rope_axes_dim": (2, 2, 4),
    }
    return _build("HunyuanVideoTransformer3DModel", defaults, config)


def tiny_mochi(**config: Any) -> nn.Module:
    """Mochi: attention over text and video tokens together (the last block's text stream ends)."""
    defaults = {
        **HEAD_CONFIG,
        "patch_size": 2,
        "num_layers": 2,
        "pooled_projection_dim": WIDTH,
        "in_channels": 4,
        "text_embed_dim": TEXT_WIDTH,
        "time_embed_dim": 4,
        "max_sequence_length": 6,
    }
    return _build("MochiTransformer3DModel", defaults, config)


def tiny_stable_audio(**config: Any) -> nn.Module:
    """Stable Audio's DiT: an 8-long latent of 4 channels, grouped-query self-attention, cross attention."""
    defaults = {
        **HEAD_CONFIG,
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "num_layers": 2,
        "num_key_value_attention_heads": 1,
        "cross_attention_dim": WIDTH,
        "time_proj_dim": WIDTH,
        "global_states_input_dim": 2 * WIDTH,
        "cross_attention_input_dim": WIDTH,
    }
    return _build("StableAudioDiTModel", defaults, config)


MOCHI_AUTOCAST = pytest.mark.filterwarnings("ignore:In CPU autocast:UserWarning")
"""Mochi's rotary embedding asks for float32 autocast, which torch refuses with a warning on CPU."""

TRANSFORMERS: dict[str, Callable[[], nn.Module]] = {
    "cogvideox": tiny_cogvideox,
    "wan": tiny_wan,
    "ltx": tiny_ltx,
    "hunyuan-video": tiny_hunyuan_video,
    "mochi": tiny_mochi,
    "stable-audio": tiny_stable_audio,
}
"""Every transformer the plugin maps, by case name."""


# --- pipelines (no text encoder is run: prompt embeddings are passed in) ---------------------


def _text(seed: int, tokens: int = 6, width: int = TEXT_WIDTH) -> dict[str, torch.Tensor]:
    """Seeded ``prompt_embeds`` and ``negative_prompt_embeds`` of ``tokens`` x ``width``."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, tokens, width) if tokens else (1, width)
    return {
        "prompt_embeds": torch.randn(*shape, generator=generator),
        "negative_prompt_embeds": torch.randn(*shape, generator=generator),
    }


def _masks(tokens: int = 6) -> dict[str, torch.Tensor]:
    return {"prompt_attention_mask": torch.ones(1, tokens), "negative_prompt_attention_mask": torch.ones(1, tokens)}


def _flow_scheduler() -> Any:
    """Wan's scheduler: UniPC on flow-matching sigmas."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def _video(seed: int, height: int, width: int, num_frames: int, guidance_scale: float) -> dict[str, Any]:
    """The keyword arguments of a seeded-prompt video call with latents out."""
    size = {"height": height, "width": width, "num_frames": num_frames}
    return {**_text(seed), **size, "guidance_scale": guidance_scale, "output_type": "latent"}


def cogvideox_pipeline(transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """CogVideoX with batched CFG; no VAE (latents out): 5 frames of 32x32 are 2 latent frames of 4x4."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    pipe = CogVideoXPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=transformer or tiny_cogvideox(),
        scheduler=CogVideoXDDIMScheduler(),
    )
    return pipe, _video(1, 32, 32, 5, guidance_scale=6.0)


def wan_pipeline(two_experts: bool = False, transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """Wan 2.1 (one transformer), or Wan 2.2 with a high-noise and a low-noise expert switching at
    timestep 600 (``boundary_ratio`` 0.6); CFG runs as two calls per step."""
    from diffusers import WanPipeline

    experts = {"transformer_2": tiny_wan(seed=1), "boundary_ratio": 0.6} if two_experts else {}
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=transformer or tiny_wan(),
        scheduler=_flow_scheduler(),
        **experts,
    )
    kwargs = _video(2, 32, 32, 5, guidance_scale=5.0)
    return pipe, {**kwargs, "guidance_scale_2": 3.0} if two_experts else kwargs


def ltx_pipeline(transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """LTX-Video with batched CFG; no VAE: 9 frames of 64x64 are 2 latent frames of 2x2."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    pipe = LTXPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=transformer or tiny_ltx(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return pipe, {**_video(3, 64, 64, 9, guidance_scale=3.0), **_masks()}


def hunyuan_video_pipeline(transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """HunyuanVideo with true CFG (two calls per step); no VAE: 5 frames of 32x32 are 2 latent frames of 4x4."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    encoders = {f"{kind}{suffix}": None for kind in ("text_encoder", "tokenizer") for suffix in ("", "_2")}
    pipe = HunyuanVideoPipeline(
        transformer=transformer or tiny_hunyuan_video(),
        vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        **encoders,
    )
    generator = torch.Generator().manual_seed(9)
    pooled = {f"{kind}pooled_prompt_embeds": torch.randn(1, 8, generator=generator) for kind in ("", "negative_")}
    return pipe, {**_video(5, 32, 32, 5, guidance_scale=1.0), **_masks(), **pooled, "true_cfg_scale": 4.0}


def mochi_pipeline(transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """Mochi with batched CFG; no VAE: 7 frames of 32x32 are 2 latent frames of 4x4."""
    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline

    pipe = MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        transformer=transformer or tiny_mochi(),
    )
    return pipe, {**_video(6, 32, 32, 7, guidance_scale=4.5), **_masks()}


def stable_audio_pipeline(transformer: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """Stable Audio with batched CFG: a one-second mono clip at 32 Hz through a tiny Oobleck VAE."""
    from diffusers import AutoencoderOobleck, EDMDPMSolverMultistepScheduler, StableAudioPipeline
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel

    with warnings.catch_warnings():  # Oobleck uses torch.nn.utils.weight_norm, deprecated in torch
        warnings.simplefilter("ignore", FutureWarning)
        vae = seeded(
            lambda: AutoencoderOobleck(
                encoder_hidden_size=4,
                downsampling_ratios=[2, 2],
                channel_multiples=[1, 2],
                decoder_channels=4,
                decoder_input_channels=4,
                audio_channels=1,
                sampling_rate=32,
            )
        )
    projection = seeded(
        lambda: StableAudioProjectionModel(
            text_encoder_dim=TEXT_WIDTH, conditioning_dim=WIDTH, min_value=0, max_value=8
        )
    )
    pipe = StableAudioPipeline(
        vae=vae,
        text_encoder=None,
        projection_model=projection,
        tokenizer=None,
        transformer=transformer or tiny_stable_audio(),
        scheduler=EDMDPMSolverMultistepScheduler(),
    )
    return pipe, {**_text(4), "audio_end_in_s": 1.0, "guidance_scale": 7.0, "output_type": "pt"}


MEL_BINS = 8
"""Mel bins of the audio UNet pipelines' spectrograms (the UNets' latent width)."""


def _mel_vae() -> nn.Module:
    """A one-block ``AutoencoderKL`` from one-channel spectrograms to 4 latent channels, same size."""
    from diffusers import AutoencoderKL

    return seeded(
        lambda: AutoencoderKL(
            in_channels=1,
            out_channels=1,
            block_out_channels=(8,),
            down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",),
            latent_channels=4,
            norm_num_groups=4,
            sample_size=8,
        )
    )


def _vocoder() -> nn.Module:
    """A tiny ``SpeechT5HifiGan``: 8 mel bins at 8 frames per second to 16 Hz audio."""
    import transformers

    config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=MEL_BINS,
        sampling_rate=16,
        upsample_initial_channel=8,
        upsample_rates=[2],
        upsample_kernel_sizes=[4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1]],
        normalize_before=False,
    )
    return seeded(lambda: transformers.SpeechT5HifiGan(config))


def _clap_text() -> nn.Module:
    """A tiny CLAP text encoder: never run (embeddings are passed in), but the pipelines read its dtype."""
    import transformers

    config = transformers.ClapTextConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        projection_dim=8,
        max_position_embeddings=16,
    )
    return seeded(lambda: transformers.ClapTextModelWithProjection(config))


def _audio_unet_pipeline(class_name: str, unet: nn.Module, **components: Any) -> Any:
    import diffusers

    from tests.unet_models import scheduler

    return getattr(diffusers, class_name)(
        vae=_mel_vae(), tokenizer=None, unet=unet, scheduler=scheduler(), vocoder=_vocoder(), **components
    )


def audioldm_pipeline() -> tuple[Any, dict[str, Any]]:
    """AudioLDM with batched CFG: a one-second clip of 8 mel frames; the text embedding is a class label."""
    from tests.unet_models import tiny_audioldm_unet

    pipe = _audio_unet_pipeline("AudioLDMPipeline", tiny_audioldm_unet(), text_encoder=_clap_text())
    return pipe, {**_text(5, tokens=0, width=8), "audio_length_in_s": 1.0, "guidance_scale": 2.5, "output_type": "pt"}


def musicldm_pipeline() -> tuple[Any, dict[str, Any]]:
    """MusicLDM: AudioLDM's UNet layout, CLAP's text embedding as a class label, batched CFG."""
    from tests.unet_models import tiny_audioldm_unet

    pipe = _audio_unet_pipeline(
        "MusicLDMPipeline", tiny_audioldm_unet(seed=1), text_encoder=_clap_text(), feature_extractor=None
    )
    return pipe, {**_text(6, tokens=0, width=8), "audio_length_in_s": 1.0, "guidance_scale": 2.0, "output_type": "pt"}


def audioldm2_pipeline(unet: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """AudioLDM 2 with batched CFG: T5 embeddings for one cross attention, the language model's
    generated embeddings for the other (both passed in; the tiny T5 and GPT-2 are never run)."""
    import transformers
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2ProjectionModel

    from tests.unet_models import tiny_audioldm2_unet

    t5 = transformers.T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    gpt2 = transformers.GPT2Config(
        vocab_size=32, n_embd=8, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    pipe = _audio_unet_pipeline(
        "AudioLDM2Pipeline",
        unet or tiny_audioldm2_unet(),
        text_encoder=None,
        text_encoder_2=seeded(lambda: transformers.T5EncoderModel(t5)),
        projection_model=seeded(
            lambda: AudioLDM2ProjectionModel(text_encoder_dim=8, text_encoder_1_dim=12, langauge_model_dim=8)
        ),
        language_model=seeded(lambda: transformers.GPT2LMHeadModel(gpt2)),
        tokenizer_2=None,
        feature_extractor=None,
    )
    generated = _text(8, width=8)
    kwargs = {
        **_text(7, width=12),
        "generated_prompt_embeds": generated["prompt_embeds"],
        "negative_generated_prompt_embeds": generated["negative_prompt_embeds"],
        "audio_length_in_s": 1.0,
        "guidance_scale": 3.5,
        "output_type": "pt",
    }
    return pipe, kwargs


PIPELINES: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "cogvideox": cogvideox_pipeline,
    "wan": wan_pipeline,
    "ltx": ltx_pipeline,
    "hunyuan-video": hunyuan_video_pipeline,
    "mochi": mochi_pipeline,
    "stable-audio": stable_audio_pipeline,
    "audioldm": audioldm_pipeline,
    "audioldm2": audioldm2_pipeline,
    "musicldm": musicldm_pipeline,
}
"""Each pipeline case: a builder returning the pipeline and the keyword arguments of a call."""


def run_pipeline(pipe: Any, kwargs: dict[str, Any], steps: int, seed: int = 0) -> torch.Tensor:
    """One seeded generation of ``steps`` steps: the latents, or the audio, as a tensor."""
    pipe.set_progress_bar_config(disable=True)
    output = pipe(**kwargs, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed))
    return torch.as_tensor(output.frames if hasattr(output, "frames") else output.audios)
