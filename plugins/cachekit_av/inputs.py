"""Example inputs: one small, seeded forward call of each video and audio transformer mapped.

Sizes come from the model's config (channels, patch sizes, text widths) with a short clip:
:data:`FRAMES` latent frames of :data:`SIDE` x :data:`SIDE` patches, :data:`TEXT_TOKENS` text
tokens, an audio latent of at most :data:`AUDIO_LENGTH`, so the call is cheap even on a
full-size model. Arguments are keywords, as the diffusers pipelines pass them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

FRAMES = 2
"""Latent frames of a video example (times the temporal patch size)."""
SIDE = 2
"""Patches along each side of a video frame."""
TEXT_TOKENS = 6
"""Text tokens of the conditioning."""
AUDIO_LENGTH = 16
"""Longest audio latent of an example."""
TIMESTEP = 500.0

Builder = Callable[[nn.Module, int, torch.Generator], dict[str, Any]]


def example_kwargs(model: nn.Module, batch_size: int = 1, seed: int = 0) -> dict[str, Any] | None:
    """Keyword arguments of one forward call of ``model`` with ``batch_size`` samples, or
    ``None`` for a model this module has no builder for."""
    generator = torch.Generator().manual_seed(seed)
    for cls in type(model).__mro__:
        if cls.__name__ in _BUILDERS:
            return _BUILDERS[cls.__name__](model, batch_size, generator)
    return None


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _timesteps(batch_size: int) -> torch.Tensor:
    return torch.full((batch_size,), TIMESTEP)


def _patches(patch_size: Any) -> tuple[int, int]:
    """``(temporal, spatial)`` patch sizes from an int or a ``(t, h, w)`` tuple."""
    return (patch_size[0], patch_size[1]) if isinstance(patch_size, (list, tuple)) else (1, patch_size)


def _video(model: nn.Module, batch_size: int, generator: torch.Generator, frames_first: bool) -> torch.Tensor:
    config = model.config
    temporal, spatial = _patches(config.patch_size)
    temporal = getattr(config, "patch_size_t", None) or temporal
    frames, side = FRAMES * temporal, SIDE * spatial
    if frames_first:
        return _randn(generator, batch_size, frames, config.in_channels, side, side)
    return _randn(generator, batch_size, config.in_channels, frames, side, side)


def _text(generator: torch.Generator, batch_size: int, width: int) -> torch.Tensor:
    return _randn(generator, batch_size, TEXT_TOKENS, width)


def _cogvideox(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = {
        "hidden_states": _video(model, batch_size, generator, frames_first=True),
        "encoder_hidden_states": _text(generator, batch_size, config.text_embed_dim),
        "timestep": _timesteps(batch_size),
    }
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


def _wan(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _video(model, batch_size, generator, frames_first=False),
        "encoder_hidden_states": _text(generator, batch_size, model.config.text_dim),
        "timestep": _timesteps(batch_size),
    }


def _ltx(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    side = SIDE * config.patch_size
    frames = FRAMES * config.patch_size_t
    return {
        "hidden_states": _randn(generator, batch_size, frames * side * side, config.in_channels),
        "encoder_hidden_states": _text(generator, batch_size, config.caption_channels),
        "timestep": _timesteps(batch_size),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
        "num_frames": frames,
        "height": side,
        "width": side,
    }


def _hunyuan_video(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = {
        "hidden_states": _video(model, batch_size, generator, frames_first=False),
        "timestep": _timesteps(batch_size),
        "encoder_hidden_states": _text(generator, batch_size, config.text_embed_dim),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
        "pooled_projections": _randn(generator, batch_size, config.pooled_projection_dim),
    }
    if config.guidance_embeds:
        kwargs["guidance"] = torch.full((batch_size,), 6000.0)
    return kwargs


def _mochi(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    return {
        "hidden_states": _video(model, batch_size, generator, frames_first=False),
        "encoder_hidden_states": _text(generator, batch_size, model.config.text_embed_dim),
        "timestep": _timesteps(batch_size),
        "encoder_attention_mask": torch.ones(batch_size, TEXT_TOKENS),
    }


def _stable_audio(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    config = model.config
    length = min(config.sample_size, AUDIO_LENGTH)
    global_tokens = 1
    return {
        "hidden_states": _randn(generator, batch_size, config.in_channels, length),
        "timestep": _timesteps(batch_size),
        "encoder_hidden_states": _text(generator, batch_size, config.cross_attention_input_dim),
        "global_hidden_states": _randn(generator, batch_size, global_tokens, config.global_states_input_dim),
        "rotary_embedding": get_1d_rotary_pos_embed(
            config.attention_head_dim // 2, length + global_tokens, use_real=True, repeat_interleave_real=False
        ),
    }


_BUILDERS: dict[str, Builder] = {
    "CogVideoXTransformer3DModel": _cogvideox,
    "WanTransformer3DModel": _wan,
    "LTXVideoTransformer3DModel": _ltx,
    "HunyuanVideoTransformer3DModel": _hunyuan_video,
    "MochiTransformer3DModel": _mochi,
    "StableAudioDiTModel": _stable_audio,
}
"""Example-input builders by class name, matched along the model's MRO."""
