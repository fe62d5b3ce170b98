"""Tiny seeded diffusers UNets for the UNet plugin's tests: real block layouts, small widths.

Every builder seeds torch, builds from a config (nothing is downloaded) and returns the
model in eval mode. Widths are multiples of the group-norm groups; latents are 8x8 or 16x16.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

SD15_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD15_WIDTHS = (320, 640, 1280, 1280)
"""Stable Diffusion 1.5's block widths (its cross-attention width is 768)."""


def _seeded(build: Any, seed: int, **config: Any) -> nn.Module:
    torch.manual_seed(seed)
    return build(**config).eval()


def build_unet(class_name: str, down: tuple[str, ...], seed: int = 0, **config: Any) -> nn.Module:
    """A seeded diffusers UNet: ``down`` blocks mirrored on the up path, 2 layers per block,
    widths 8/16, 4 norm groups (for classes that take them), 8x8 latent, unless ``config``
    says otherwise."""
    import inspect

    import diffusers

    build = getattr(diffusers, class_name)
    accepted = inspect.signature(build.__init__).parameters
    defaults = {"sample_size": 8, "block_out_channels": (8, 16), "layers_per_block": 2, "norm_num_groups": 4}
    up = tuple(name.replace("Down", "Up") for name in reversed(down))
    taken = {key: value for key, value in defaults.items() if key in accepted}
    return _seeded(build, seed, **{**taken, "down_block_types": down, "up_block_types": up, **config})


def sd15_unet(
    widths: tuple[int, ...] = (32, 32, 64, 64), cross_attention_dim: int = 32, sample_size: int = 16, seed: int = 0
) -> nn.Module:
    """``UNet2DConditionModel`` with SD 1.5's layout (4 blocks, 2 layers, 8 heads) at ``widths``."""
    return build_unet(
        "UNet2DConditionModel",
        SD15_DOWN,
        seed,
        sample_size=sample_size,
        block_out_channels=widths,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=min(32, widths[0]),
    )


def sd15_full_width() -> nn.Module:
    """SD 1.5's UNet config (widths 320/640/1280/1280, context 768, 64x64 latent), random
    weights: the model of the docs' branch table (``cachekit inspect``) and of the benchmark."""
    return sd15_unet(SD15_WIDTHS, cross_attention_dim=768, sample_size=64)


def tiny_sd_unet(in_channels: int = 4, seed: int = 0) -> nn.Module:
    """The smallest SD-layout UNet (8x8 latent, widths 8/16/16/16); 9 input channels for inpainting."""
    return build_unet(
        "UNet2DConditionModel",
        SD15_DOWN,
        seed,
        in_channels=in_channels,
        block_out_channels=(8, 16, 16, 16),
        cross_attention_dim=8,
        attention_head_dim=4,
    )


def tiny_unet2d(seed: int = 0) -> nn.Module:
    """``UNet2DModel`` with a plain and an attention block, as DDPM/DDIM pipelines use."""
    return build_unet(
        "UNet2DModel", ("DownBlock2D", "AttnDownBlock2D"), seed, in_channels=3, out_channels=3, attention_head_dim=4
    )


def tiny_sdxl_unet(seed: int = 0) -> nn.Module:
    """SDXL's layout (3 blocks, the first without attention, text-time added conditioning)."""
    return build_unet(
        "UNet2DConditionModel",
        ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        seed,
        block_out_channels=(8, 16, 16),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        cross_attention_dim=16,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=8 + 6 * 4,
    )


TWO_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D")


def tiny_audioldm_unet(seed: int = 0) -> nn.Module:
    """AudioLDM's (and MusicLDM's) layout: text embedding as a class label, no cross context."""
    return build_unet(
        "UNet2DConditionModel",
        TWO_BLOCKS,
        seed,
        cross_attention_dim=(8, 16),
        attention_head_dim=4,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=8,
        class_embeddings_concat=True,
    )


def tiny_audioldm2_unet(seed: int = 0) -> nn.Module:
    """AudioLDM2's UNet: self-attention plus two cross-attentions after every resnet."""
    return build_unet(
        "AudioLDM2UNet2DConditionModel",
        TWO_BLOCKS,
        seed,
        cross_attention_dim=([None, 8, 12], [None, 8, 12]),
        attention_head_dim=4,
    )


def tiny_svd_unet(in_channels: int = 8, seed: int = 0) -> nn.Module:
    """``UNetSpatioTemporalConditionModel`` (Stable Video Diffusion's layout, 2 blocks)."""
    return build_unet(
        "UNetSpatioTemporalConditionModel",
        ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        seed,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 32),
        cross_attention_dim=16,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=12,
        num_frames=2,
    )


def tiny_unet3d(seed: int = 0) -> nn.Module:
    """``UNet3DConditionModel`` (text-to-video: temporal convolutions and attentions per layer)."""
    return build_unet(
        "UNet3DConditionModel",
        ("CrossAttnDownBlock3D", "DownBlock3D"),
        seed,
        cross_attention_dim=8,
        attention_head_dim=4,
    )


def tiny_motion_unet(seed: int = 0) -> nn.Module:
    """``UNetMotionModel`` (AnimateDiff: a motion module after every layer)."""
    return build_unet(
        "UNetMotionModel",
        ("CrossAttnDownBlockMotion", "DownBlockMotion"),
        seed,
        cross_attention_dim=8,
        num_attention_heads=2,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
    )


UNETS: dict[str, Callable[[], nn.Module]] = {
    "UNet2DModel": tiny_unet2d,
    "SD 1.5": tiny_sd_unet,
    "SDXL": tiny_sdxl_unet,
    "AudioLDM": tiny_audioldm_unet,
    "AudioLDM2": tiny_audioldm2_unet,
    "SVD": tiny_svd_unet,
    "UNet3D": tiny_unet3d,
    "AnimateDiff": tiny_motion_unet,
}
"""One UNet of every family the UNet plugin maps, by case name."""


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run a test module on one CPU thread: tiny models gain nothing from intra-op threads, and
    on a shared, loaded machine their thread synchronisation costs 50 times the compute.

    Import it into a test module to make it apply there.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SD15_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
"""Stable Diffusion 1.5's noise schedule, shared by every scheduler the tests build."""


def scheduler(name: str = "DDIMScheduler") -> Any:
    """A diffusers scheduler by class name with SD 1.5's schedule (PNDM as SD 1.5 ships it)."""
    import diffusers

    extra = {
        "DDIMScheduler": {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1},
        "PNDMScheduler": {"skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1},
    }.get(name, {})
    return getattr(diffusers, name)(**SD15_SCHEDULE, **extra)


def tiny_vae(seed: int = 0) -> nn.Module:
    """An ``AutoencoderKL`` of one block: 4 latent channels, images the latent's size."""
    from diffusers import AutoencoderKL

    return _seeded(
        AutoencoderKL,
        seed,
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=8,
    )


def _pipeline(class_name: str, **components: Any) -> Any:
    """A diffusers pipeline by class name, progress bar off."""
    import diffusers

    pipe = getattr(diffusers, class_name)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_pipeline(
    unet: nn.Module | None = None, scheduler_name: str = "DDIMScheduler", kind: str = "", **components: Any
) -> Any:
    """A Stable Diffusion pipeline (``kind``: "", "Img2Img", "Inpaint", "ControlNet") with no
    text encoder: call it with :func:`prompt_embeds`."""
    return _pipeline(
        f"StableDiffusion{kind}Pipeline",
        vae=tiny_vae(),
        text_encoder=None,
        tokenizer=None,
        unet=unet if unet is not None else tiny_sd_unet(),
        scheduler=scheduler(scheduler_name),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **components,
    )


def tiny_controlnet(seed: int = 1) -> nn.Module:
    """A ``ControlNetModel`` matching :func:`tiny_sd_unet`'s skips, from an 8x8 control image.

    ControlNet's output convolutions start at zero (its residuals would all be 0); here they
    are drawn at random so that every residual it adds is felt.
    """
    from diffusers import ControlNetModel

    controlnet = _seeded(
        ControlNetModel,
        seed,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=SD15_DOWN,
        layers_per_block=2,
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
        conditioning_embedding_out_channels=(8,),
    )
    zero_initialised = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            if name.startswith(zero_initialised):
                parameter.normal_(0.0, 0.3)
    return controlnet


def sdxl_pipeline() -> Any:
    """An SDXL pipeline (Euler) around :func:`tiny_sdxl_unet`; call it with :func:`sdxl_embeds`."""
    return _pipeline(
        "StableDiffusionXLPipeline",
        vae=tiny_vae(),
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=tiny_sdxl_unet(),
        scheduler=scheduler("EulerDiscreteScheduler"),
    )


def sdxl_embeds(seed: int = 0) -> dict[str, torch.Tensor]:
    """Prompt and pooled embeddings (both CFG branches) standing in for SDXL's two text encoders."""
    generator = torch.Generator().manual_seed(seed + 100)
    pooled = {name: torch.randn(1, 8, generator=generator) for name in ("", "negative_")}
    return {
        **prompt_embeds(16, seed),
        "pooled_prompt_embeds": pooled[""],
        "negative_pooled_prompt_embeds": pooled["negative_"],
    }


def unet2d_pipeline(kind: str = "DDPM") -> Any:
    """A ``DDPMPipeline`` or ``DDIMPipeline`` around :func:`tiny_unet2d`."""
    import diffusers

    return _pipeline(f"{kind}Pipeline", unet=tiny_unet2d(), scheduler=getattr(diffusers, f"{kind}Scheduler")())


def svd_pipeline() -> Any:
    """Stable Video Diffusion around :func:`tiny_svd_unet` with a tiny CLIP image encoder."""
    import transformers
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler

    vae = _seeded(
        AutoencoderKLTemporalDecoder,
        0,
        block_out_channels=(32,),
        down_block_types=("DownEncoderBlock2D",),
        latent_channels=4,
        layers_per_block=1,
    )
    vision = transformers.CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        projection_dim=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=8,
        patch_size=4,
    )
    return _pipeline(
        "StableVideoDiffusionPipeline",
        vae=vae,
        image_encoder=_seeded(transformers.CLIPVisionModelWithProjection, 0, config=vision),
        unet=tiny_svd_unet(),
        scheduler=EulerDiscreteScheduler(),
        feature_extractor=transformers.CLIPImageProcessor(),
    )


def video_pipeline(class_name: str) -> Any:
    """``TextToVideoSDPipeline`` around :func:`tiny_unet3d` or ``AnimateDiffPipeline`` around
    :func:`tiny_motion_unet`; call them with :func:`prompt_embeds`."""
    animatediff = class_name == "AnimateDiffPipeline"
    return _pipeline(
        class_name,
        vae=tiny_vae(),
        text_encoder=None,
        tokenizer=None,
        unet=tiny_motion_unet() if animatediff else tiny_unet3d(),
        scheduler=scheduler(),
        **({"motion_adapter": None} if animatediff else {}),
    )


def prompt_embeds(width: int, seed: int = 0, tokens: int = 77) -> dict[str, torch.Tensor]:
    """Seeded ``prompt_embeds`` and ``negative_prompt_embeds`` standing in for a text encoder."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "prompt_embeds": torch.randn(1, tokens, width, generator=generator),
        "negative_prompt_embeds": torch.randn(1, tokens, width, generator=generator),
    }


def deep_calls(unet: nn.Module, run: Callable[[], Any]) -> tuple[list[int], Any]:
    """Indices of the UNet calls during ``run()`` in which the mid block computed, and what
    ``run()`` returned.

    Watches the mid block's first leaf module: a pre-hook on the mid block itself would fire
    on reuse steps too, since caching replaces ``forward``, not ``__call__``.
    """
    leaf = next(module for module in unet.mid_block.modules() if not any(module.children()))
    calls: list[int] = []
    ran: list[int] = []
    hooks = [
        unet.register_forward_pre_hook(lambda *_: calls.append(len(calls))),
        leaf.register_forward_pre_hook(lambda *_: ran.append(calls[-1])),
    ]
    try:
        result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(set(ran)), result
