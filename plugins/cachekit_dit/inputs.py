"""Example inputs: one small, seeded forward call of each transformer this plugin maps.

Sizes come from the model's config (latent size, channels, text widths), with a short
text sequence, so the call is cheap even on a full-size model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

TEXT_TOKENS = 8
"""Length of the made-up text sequence where a model takes one of free length."""

Builder = Callable[[nn.Module, int, torch.Generator], dict[str, Any]]
_BUILDERS: dict[str, Builder] = {}


def _builds(*class_names: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        _BUILDERS.update(dict.fromkeys(class_names, builder))
        return builder

    return register


def example_kwargs(model: nn.Module, batch_size: int = 1, seed: int = 0) -> dict[str, Any] | None:
    """Keyword arguments of one forward call of ``model`` with ``batch_size`` samples, or ``None``
    when this plugin cannot make them (a timm-style DiT without ``x_embedder.img_size``)."""
    generator = torch.Generator().manual_seed(seed)
    for cls in type(model).__mro__:
        if cls.__name__ in _BUILDERS:
            return _BUILDERS[cls.__name__](model, batch_size, generator)
    return _timm_style(model, batch_size, generator)


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _latents(model: nn.Module, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    size = model.config.sample_size
    return _randn(generator, batch_size, model.config.in_channels, size, size)


def _timesteps(batch_size: int, value: float = 500.0) -> torch.Tensor:
    return torch.full((batch_size,), value)


@_builds("DiTTransformer2DModel")
def _dit(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    labels = torch.randint(model.config.num_embeds_ada_norm, (batch_size,), generator=generator)
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "timestep": _timesteps(batch_size),
        "class_labels": labels,
    }


@_builds("PixArtTransformer2DModel")
def _pixart(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    width = config.caption_channels or config.cross_attention_dim
    added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
    if model.use_additional_conditions:
        pixels = float(config.sample_size * 8)
        added = {"resolution": torch.tensor([[pixels, pixels]] * batch_size), "aspect_ratio": torch.ones(batch_size, 1)}
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": _randn(generator, batch_size, TEXT_TOKENS, width),
        "timestep": _timesteps(batch_size),
        "added_cond_kwargs": added,
    }


@_builds("SD3Transformer2DModel")
def _sd3(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": _randn(generator, batch_size, TEXT_TOKENS, config.joint_attention_dim),
        "pooled_projections": _randn(generator, batch_size, config.pooled_projection_dim),
        "timestep": _timesteps(batch_size),
    }


@_builds(
    "FluxTransformer2DModel", "BriaTransformer2DModel", "LongCatImageTransformer2DModel", "OvisImageTransformer2DModel"
)
def _flux(model: nn.Module, batch_size: int, generator: torch.Generator, side: int = 4) -> dict[str, Any]:
    """Flux and its kin: packed image tokens with their 3-axis position ids, text tokens,
    and the pooled text and guidance inputs where the model takes them."""
    config = model.config
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    image_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    kwargs = {
        "hidden_states": _randn(generator, batch_size, side * side, config.in_channels),
        "encoder_hidden_states": _randn(generator, batch_size, TEXT_TOKENS, config.joint_attention_dim),
        "timestep": _timesteps(batch_size, 0.5),
        "img_ids": image_ids,
        "txt_ids": torch.zeros(TEXT_TOKENS, 3),
    }
    if config.get("pooled_projection_dim") and "pooled_projections" in inspect.signature(model.forward).parameters:
        kwargs["pooled_projections"] = _randn(generator, batch_size, config.pooled_projection_dim)
    if config.get("guidance_embeds"):
        kwargs["guidance"] = _timesteps(batch_size, 3.5)
    return kwargs


@_builds("SanaTransformer2DModel")
def _sana(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": _randn(generator, batch_size, TEXT_TOKENS, config.caption_channels),
        "timestep": _timesteps(batch_size),
    }
    if config.guidance_embeds:
        kwargs["guidance"] = _timesteps(batch_size, 4.5)
    return kwargs


@_builds("HunyuanDiT2DModel")
def _hunyuan(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    config = model.config
    grid = config.sample_size // config.patch_size
    head_dim = model.inner_dim // model.num_heads
    kwargs = {
        "hidden_states": _latents(model, batch_size, generator),
        "timestep": _timesteps(batch_size),
        "encoder_hidden_states": _randn(generator, batch_size, config.text_len, config.cross_attention_dim),
        "text_embedding_mask": torch.ones(batch_size, config.text_len, dtype=torch.long),
        "encoder_hidden_states_t5": _randn(generator, batch_size, config.text_len_t5, config.cross_attention_dim_t5),
        "text_embedding_mask_t5": torch.ones(batch_size, config.text_len_t5, dtype=torch.long),
        "image_rotary_emb": get_2d_rotary_pos_embed(head_dim, ((0, 0), (grid, grid)), (grid, grid)),
    }
    if config.use_style_cond_and_image_meta_size:
        pixels = float(config.sample_size * 8)
        kwargs["image_meta_size"] = torch.tensor([[pixels, pixels, pixels, pixels, 0.0, 0.0]] * batch_size)
        kwargs["style"] = torch.zeros(batch_size, dtype=torch.long)
    return kwargs


def _timm_style(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any] | None:
    """``x, t`` (and ``y`` when the model embeds labels) for a DiT-paper-style model."""
    embedder = getattr(model, "x_embedder", None)
    projection = getattr(embedder, "proj", None)
    image_size = getattr(embedder, "img_size", None)
    if not isinstance(projection, nn.Conv2d) or image_size is None:
        return None
    parameters = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {
        "x": _randn(generator, batch_size, projection.in_channels, *image_size),
        "t": torch.randint(1000, (batch_size,), generator=generator),
    }
    classes = getattr(getattr(model, "y_embedder", None), "num_classes", None)
    if "y" in parameters and isinstance(classes, int):
        kwargs["y"] = torch.randint(classes, (batch_size,), generator=generator)
    return kwargs if set(kwargs) <= set(parameters) else None
