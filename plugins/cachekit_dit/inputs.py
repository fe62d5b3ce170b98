"""Example inputs: one small, seeded forward call of each transformer this plugin maps.

Sizes come from the model's config (latent size, channels, text widths), with a short
text sequence, so the call is cheap even on a full-size model.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from cachekit.trunk import ExampleInputs, noise, timesteps

TEXT_TOKENS = 8
"""Length of the made-up text sequence where a model takes one of free length."""


def _timm_style(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any] | None:
    """``x`` and, where ``forward`` takes them, ``t`` and ``y`` (when the model embeds labels) for a
    DiT-paper-style model or a timm ``VisionTransformer``; ``None`` without an ``x_embedder`` or
    ``patch_embed`` that has an ``img_size``."""
    embedder = getattr(model, "x_embedder", None) or getattr(model, "patch_embed", None)
    projection = getattr(embedder, "proj", None)
    image_size = getattr(embedder, "img_size", None)
    if not isinstance(projection, nn.Conv2d) or image_size is None:
        return None
    parameters = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {"x": noise(generator, batch_size, projection.in_channels, *image_size)}
    if "t" in parameters:
        kwargs["t"] = torch.randint(1000, (batch_size,), generator=generator)
    classes = getattr(getattr(model, "y_embedder", None), "num_classes", None)
    if "y" in parameters and isinstance(classes, int):
        kwargs["y"] = torch.randint(classes, (batch_size,), generator=generator)
    return kwargs if "x" in parameters else None


EXAMPLES = ExampleInputs(fallback=_timm_style)
"""The example call of each diffusers transformer mapped, by class; a timm-style DiT's or ViT's otherwise."""


def _latents(model: nn.Module, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    size = model.config.sample_size
    return noise(generator, batch_size, model.config.in_channels, size, size)


@EXAMPLES.builds("DiTTransformer2DModel")
def _dit(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    labels = torch.randint(model.config.num_embeds_ada_norm, (batch_size,), generator=generator)
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "timestep": timesteps(batch_size),
        "class_labels": labels,
    }


@EXAMPLES.builds("PixArtTransformer2DModel")
def _pixart(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    width = config.caption_channels or config.cross_attention_dim
    added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
    if model.use_additional_conditions:
        pixels = float(config.sample_size * 8)
        added = {"resolution": torch.tensor([[pixels, pixels]] * batch_size), "aspect_ratio": torch.ones(batch_size, 1)}
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": noise(generator, batch_size, TEXT_TOKENS, width),
        "timestep": timesteps(batch_size),
        "added_cond_kwargs": added,
    }


@EXAMPLES.builds("SD3Transformer2DModel")
def _sd3(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    return {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": noise(generator, batch_size, TEXT_TOKENS, config.joint_attention_dim),
        "pooled_projections": noise(generator, batch_size, config.pooled_projection_dim),
        "timestep": timesteps(batch_size),
    }


@EXAMPLES.builds(
    "FluxTransformer2DModel", "BriaTransformer2DModel", "LongCatImageTransformer2DModel", "OvisImageTransformer2DModel"
)
def _flux(model: nn.Module, batch_size: int, generator: torch.Generator, side: int = 4) -> dict[str, Any]:
    """Flux and its kin: packed image tokens with their 3-axis position ids, text tokens,
    and the pooled text and guidance inputs where the model takes them."""
    config = model.config
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    image_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    kwargs = {
        "hidden_states": noise(generator, batch_size, side * side, config.in_channels),
        "encoder_hidden_states": noise(generator, batch_size, TEXT_TOKENS, config.joint_attention_dim),
        "timestep": timesteps(batch_size, 0.5),
        "img_ids": image_ids,
        "txt_ids": torch.zeros(TEXT_TOKENS, 3),
    }
    if config.get("pooled_projection_dim") and "pooled_projections" in inspect.signature(model.forward).parameters:
        kwargs["pooled_projections"] = noise(generator, batch_size, config.pooled_projection_dim)
    if config.get("guidance_embeds"):
        kwargs["guidance"] = timesteps(batch_size, 3.5)
    return kwargs


@EXAMPLES.builds("SanaTransformer2DModel")
def _sana(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    config = model.config
    kwargs = {
        "hidden_states": _latents(model, batch_size, generator),
        "encoder_hidden_states": noise(generator, batch_size, TEXT_TOKENS, config.caption_channels),
        "timestep": timesteps(batch_size),
    }
    if config.guidance_embeds:
        kwargs["guidance"] = timesteps(batch_size, 4.5)
    return kwargs


@EXAMPLES.builds("HunyuanDiT2DModel")
def _hunyuan(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    config = model.config
    grid = config.sample_size // config.patch_size
    head_dim = model.inner_dim // model.num_heads
    kwargs = {
        "hidden_states": _latents(model, batch_size, generator),
        "timestep": timesteps(batch_size),
        "encoder_hidden_states": noise(generator, batch_size, config.text_len, config.cross_attention_dim),
        "text_embedding_mask": torch.ones(batch_size, config.text_len, dtype=torch.long),
        "encoder_hidden_states_t5": noise(generator, batch_size, config.text_len_t5, config.cross_attention_dim_t5),
        "text_embedding_mask_t5": torch.ones(batch_size, config.text_len_t5, dtype=torch.long),
        "image_rotary_emb": get_2d_rotary_pos_embed(head_dim, ((0, 0), (grid, grid)), (grid, grid)),
    }
    if config.use_style_cond_and_image_meta_size:
        pixels = float(config.sample_size * 8)
        kwargs["image_meta_size"] = torch.tensor([[pixels, pixels, pixels, pixels, 0.0, 0.0]] * batch_size)
        kwargs["style"] = torch.zeros(batch_size, dtype=torch.long)
    return kwargs
