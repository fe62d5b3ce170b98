"""Small valid forward calls of diffusers UNets, built from their configs.

Used by ``cachekit inspect`` to count each branch's share of the FLOPs and by the tests to
drive the UNets: the configured latent size capped at :data:`MAX_SIZE`, :data:`FRAMES`
frames for video UNets, :data:`TOKENS` text tokens. Configs this module cannot serve
(image-conditioned additions, Kandinsky hints) give ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cachekit import isinstance_str

MAX_SIZE = 32
"""Largest latent side used (SD 1.5's 64x64 latent is measured at 32x32)."""
FRAMES = 4
"""Frames of video UNets' example inputs."""
TOKENS = 77
"""Text tokens of the cross-attention context (CLIP's length)."""
TIMESTEP = 500
"""The timestep of the example call."""


@dataclass
class _Draw:
    """Seeded noise with ``batch`` leading rows, on the model's device and dtype."""

    model: nn.Module
    batch: int
    generator: torch.Generator

    def __call__(self, *shape: int, rows: int | None = None) -> torch.Tensor:
        noise = torch.randn(rows or self.batch, *shape, generator=self.generator)
        return noise.to(self.model.device, self.model.dtype)

    def timesteps(self) -> torch.Tensor:
        return torch.full((self.batch,), TIMESTEP, device=self.model.device)


def latent_size(model: nn.Module) -> int:
    """The configured sample size capped at :data:`MAX_SIZE`, a multiple of the downsampling."""
    factor = 2 ** sum(bool(getattr(block, "downsamplers", None)) for block in model.down_blocks)
    configured = model.config.sample_size
    if isinstance(configured, Sequence):
        configured = min(configured)
    size = min(configured or MAX_SIZE, MAX_SIZE)
    return max(factor, size // factor * factor)


def _class_labels(model: nn.Module, draw: _Draw) -> torch.Tensor | None:
    if getattr(model, "class_embedding", None) is None:
        return None
    kind = model.config.class_embed_type
    if kind is None:
        return torch.zeros(draw.batch, dtype=torch.long, device=model.device)
    if kind == "timestep":
        return draw.timesteps().float()
    if kind == "identity":
        return draw(model.time_embedding.linear_2.out_features)
    return draw(model.config.projection_class_embeddings_input_dim)


def _context_widths(model: nn.Module) -> tuple[int | None, int | None]:
    """Widths of ``encoder_hidden_states`` and of AudioLDM2's ``encoder_hidden_states_1``."""
    config = model.config
    if getattr(config, "encoder_hid_dim_type", None) == "text_proj":
        return config.encoder_hid_dim, None
    widths = config.cross_attention_dim
    if isinstance(widths, int):
        return widths, None
    per_block = [tuple(w) if isinstance(w, Sequence) else (w,) for w in widths]
    if isinstance_str(model, "AudioLDM2UNet2DConditionModel"):
        first = per_block[0]
        return next((w for w in first[:2] if w is not None), None), first[2] if len(first) > 2 else None
    if len(set(per_block)) == 1:
        return per_block[0][0], None
    return None, None  # a width per block (AudioLDM, MusicLDM): their pipelines pass no context


def _conditioning(model: nn.Module, draw: _Draw, context_rows: int) -> dict[str, Any] | None:
    """Context, added conditioning, class labels and timestep condition of a text UNet."""
    config = model.config
    addition = getattr(config, "addition_embed_type", None)
    if addition not in (None, "text", "text_time") or getattr(config, "encoder_hid_dim_type", None) not in (
        None,
        "text_proj",
    ):
        return None
    context, context_1 = _context_widths(model)
    kwargs: dict[str, Any] = {
        "encoder_hidden_states": None if context is None else draw(TOKENS, context, rows=context_rows)
    }
    if context_1 is not None:
        kwargs["encoder_hidden_states_1"] = draw(TOKENS, context_1)
    if addition == "text_time":
        time_ids = 6
        text = config.projection_class_embeddings_input_dim - time_ids * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": draw(text), "time_ids": draw(time_ids)}
    if (labels := _class_labels(model, draw)) is not None:
        kwargs["class_labels"] = labels
    if getattr(config, "time_cond_proj_dim", None):
        kwargs["timestep_cond"] = draw(config.time_cond_proj_dim)
    return kwargs


def example_inputs(
    model: nn.Module, batch_size: int = 1, seed: int = 0
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """``(args, kwargs)`` of one forward call of a diffusers UNet, or ``None`` if unsupported.

    Every input has ``batch_size`` rows (AnimateDiff's text context one per frame, as its
    pipeline repeats the prompt per frame); the noise comes from a generator seeded with ``seed``.
    """
    draw = _Draw(model, batch_size, torch.Generator().manual_seed(seed))
    config = model.config
    size, channels = latent_size(model), config.in_channels
    if isinstance_str(model, "UNetSpatioTemporalConditionModel"):
        return (), {
            "sample": draw(FRAMES, channels, size, size),
            "timestep": draw.timesteps(),
            "encoder_hidden_states": draw(1, config.cross_attention_dim),
            "added_time_ids": draw(config.projection_class_embeddings_input_dim // config.addition_time_embed_dim),
        }
    if isinstance_str(model, "UNet2DModel"):
        kwargs = {"sample": draw(channels, size, size), "timestep": draw.timesteps()}
        if (labels := _class_labels(model, draw)) is not None:
            kwargs["class_labels"] = labels
        return (), kwargs
    motion = isinstance_str(model, "UNetMotionModel")
    video = motion or isinstance_str(model, "UNet3DConditionModel")
    sample = draw(channels, FRAMES, size, size) if video else draw(channels, size, size)
    conditioning = _conditioning(model, draw, batch_size * FRAMES if motion else batch_size)
    if conditioning is None:
        return None
    return (), {"sample": sample, "timestep": draw.timesteps(), **conditioning}
