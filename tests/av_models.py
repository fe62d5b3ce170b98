"""Tiny seeded audio and video denoisers and pipelines for the audio/video plugin's tests.

Every transformer has 2 blocks of 2 heads of 8 channels; videos are 2 latent frames of 4x4
(or 2x2 tokens after patching); audio latents are 8 long. Pipelines get no text encoder:
they are called with prompt embeddings. The UNets come from :mod:`tests.unet_models`.
"""

from __future__ import annotations

from collections.abc import Callable

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


def tiny_cogvideox(num_layers: int = 2) -> nn.Module:
    from diffusers import CogVideoXTransformer3DModel

    return seeded(
        lambda: CogVideoXTransformer3DModel(
            num_attention_heads=HEADS,
            attention_head_dim=HEAD_DIM,
            in_channels=4,
            out_channels=4,
            time_embed_dim=WIDTH,
            text_embed_dim=TEXT_WIDTH,
            num_layers=num_layers,
            sample_width=4,
            sample_height=4,
            sample_frames=5,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=6,
        )
    )


def tiny_wan(num_layers: int = 2, seed: int = 0) -> nn.Module:
    from diffusers import WanTransformer3DModel

    return seeded(
        lambda: WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=HEADS,
            attention_head_dim=HEAD_DIM,
            in_channels=4,
            out_channels=4,
            text_dim=TEXT_WIDTH,
            freq_dim=WIDTH,
            ffn_dim=2 * WIDTH,
            num_layers=num_layers,
            rope_max_seq_len=32,
        ),
        seed,
    )


def tiny_ltx(num_layers: int = 2) -> nn.Module:
    from diffusers import LTXVideoTransformer3DModel

    return seeded(
        lambda: LTXVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=HEADS,
            attention_head_dim=HEAD_DIM,
            cross_attention_dim=WIDTH,
            num_layers=num_layers,
            caption_channels=TEXT_WIDTH,
        )
    )


def tiny_hunyuan_video(num_layers: int = 1, num_single_layers: int = 1) -> nn.Module:
    from diffusers import HunyuanVideoTransformer3DModel

    return seeded(
        lambda: HunyuanVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=HEADS,
            attention_head_dim=HEAD_DIM,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            num_refiner_layers=1,
            patch_size=2,
            text_embed_dim=TEXT_WIDTH,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 2, 4),
        )
    )


def tiny_mochi(num_layers: int = 2) -> nn.Module:
    from diffusers import MochiTransformer3DModel

    return seeded(
        lambda: MochiTransformer3DModel(
            patch_size=2,
            num_attention_heads=HEADS,
            attention_head_dim=HEAD_DIM,
            num_layers=num_layers,
            pooled_projection_dim=WIDTH,
            in_channels=4,
            text_embed_dim=TEXT_WIDTH,
            time_embed_dim=4,
            max_sequence_length=6,
        )
    )


def tiny_stable_audio(num_layers: int = 2) -> nn.Module:
    from diffusers import StableAudioDiTModel

    return seeded(
        lambda: StableAudioDiTModel(
            sample_size=8,
            in_channels=4,
            num_layers=num_layers,
            attention_head_dim=HEAD_DIM,
            num_attention_heads=HEADS,
            num_key_value_attention_heads=1,
            out_channels=4,
            cross_attention_dim=WIDTH,
            time_proj_dim=WIDTH,
            global_states_input_dim=WIDTH,
            cross_attention_input_dim=WIDTH,
        )
    )


TRANSFORMERS: dict[str, Callable[[], nn.Module]] = {
    "cogvideox": tiny_cogvideox,
    "wan": tiny_wan,
    "ltx": tiny_ltx,
    "hunyuan-video": tiny_hunyuan_video,
    "mochi": tiny_mochi,
    "stable-audio": tiny_stable_audio,
}
"""Every transformer the plugin maps, by case name."""
