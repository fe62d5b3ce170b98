"""Example inputs: one small, seeded forward call of each video and audio transformer mapped.

Sizes come from the model's config (channels, patch sizes, text widths) with a short clip:
:data:`FRAMES` latent frames of :data:`SIDE` x :data:`SIDE` patches, :data:`TEXT_TOKENS` text
tokens, an audio latent of at most :data:`AUDIO_LENGTH`, so the call is cheap even on a
full-size model. Arguments are keywords, as the diffusers pipelines pass them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cachekit.trunk import ExampleInputs, noise, timesteps

FRAMES = 2
"""Latent frames of a video example (times the temporal patch size)."""
SIDE = 2
"""Patches along each side of a video frame."""
TEXT_TOKENS = 6
"""Text tokens of the conditioning."""
AUDIO_LENGTH = 16
"""Longest audio latent of an example."""

EXAMPLES = ExampleInputs()
"""The example call of each video and audio transformer mapped, by class."""


def _patches(patch_size: Any) -> tuple[int, int]:
    """``(temporal, spatial)`` patch sizes from an int or a ``(t, h, w)`` tuple."""
    return (patch_size[0], patch_size[1]) if isinstance(patch_size, (list, tuple)) else (1, patch_size)


def _video(model: nn.Module, batch_size: int, generator: torch.Generator, frames_first: bool) -> torch.Tensor:
    config = model.config
    temporal, spatial = _patches(config.patch_size)
    temporal = getattr(config, "patch_size_t", None) or temporal
    frames, side = FRAMES * temporal, SIDE * spatial
    if frames_first:
        return noise(generator, batch_size, frames, config.in_channels, side, side)
    return noise(generator, batch_size, config.in_channels, frames, side, side)


def _text(generator: torch.Generator, batch_size: int, width: int) -> torch.Tensor:
    return noise(generator, batch_size, TEXT_TOKENS, width)


def _video_and_text(
    model: nn.Module, batch_size: int, generator: torch.Generator, text_width: int, frames_first: bool = False
) -> dict[str, Any]:
    """The latent clip, the text embedding and the timestep every video transformer takes."""
    return {
        "hidden_states": _video(model, batch_size, generator, frames_first),
        "encoder_hidden_states": _text(generator, batch_size, text_width),
        "timestep": timesteps(batch_size),
    }


@EXAMPLES.builds("CogVideoXTransformer3DModel")
def _cogvideox(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = _video_and_text(model, batch_size, generator, config.text_embed_dim, frames_first=True)
    if config.ofs_embed_dim:
        kwargs["ofs"] = torch.full((batch_size,), 2.0)
    if config.use_rotary_positional_embeddings:
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        if config.patch_size_t is None:  # CogVideoX 1.0
            grid: dict[str, Any] = {"crops_coords": ((0, 0), (SIDE, SIDE))}
        else:  # CogVideoX 1.5
            base = (config.sample_height // config.patch_size, config.sample_width // config.patch_size)
            grid = {"crops_coords": None, "grid_type": "slice", "max_size": base}
        kwargs["image_rotary_emb"] = get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim, grid_size=(SIDE, SIDE), temporal_size=FRAMES, **grid
        )
    return kwargs


@EXAMPLES.builds("WanTransformer3DModel")
def _wan(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    return _video_and_text(model, batch_size, generator, model.config.text_dim)


@EXAMPLES.builds("LTXVideoTransformer3DModel")
def _ltx(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    side = SIDE * config.patch_size
    frames = FRAMES * config.patch_size_t
    return {
        "hidden_states": noise(generator, batch_size, frames * side * side, config.in_channels),
        "encoder_hidden_states": _text(generator, batch_size, config.caption_channels),
        "timestep": timesteps(batch_size),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
        "num_frames": frames,
        "height": side,
        "width": side,
    }


@EXAMPLES.builds("HunyuanVideoTransformer3DModel")
def _hunyuan_video(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = {
        **_video_and_text(model, batch_size, generator, config.text_embed_dim),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
        "pooled_projections": noise(generator, batch_size, config.pooled_projection_dim),
    }
    if config.guidance_embeds:
        kwargs["guidance"] = torch.full((batch_size,), 6000.0)
    return kwargs


@EXAMPLES.builds("MochiTransformer3DModel")
def _mochi(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    return {
        **_video_and_text(model, batch_size, generator, model.config.text_embed_dim),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
    }


@EXAMPLES.builds("StableAudioDiTModel")
def _stable_audio(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    config = model.config
    length = min(config.sample_size, AUDIO_LENGTH)
    global_tokens = 1
    return {
        "hidden_states": noise(generator, batch_size, config.in_channels, length),
        "timestep": timesteps(batch_size),
        "encoder_hidden_states": _text(generator, batch_size, config.cross_attention_input_dim),
        "global_hidden_states": noise(generator, batch_size, global_tokens, config.global_states_input_dim),
        "rotary_embedding": get_1d_rotary_pos_embed(
            config.attention_head_dim // 2, length + global_tokens, use_real=True, repeat_interleave_real=False
        ),
    }
