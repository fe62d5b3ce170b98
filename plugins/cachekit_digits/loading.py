"""Loading the digits models: the shipped ones from the package's folder, and tiny builders.

The shipped models are diffusers pipelines loaded with the diffusers plugin's
:func:`~cachekit_diffusers.load_pretrained` (that plugin's public API); the builders make tiny pipelines with
seeded random weights. diffusers is imported inside functions only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from cachekit_diffusers import load_pretrained, prepare, require_diffusers

from cachekit import ModelSpec
from cachekit_digits.architectures import DIT_CONFIG, SCHEDULER_CONFIG, UNET_CONFIG
from cachekit_digits.models import WEIGHTS_DIR

SHIPPED: dict[str, tuple[str, str]] = {
    "digits-unet": ("unet", "diffusers:DDIMPipeline"),
    "digits-dit": ("dit", "cachekit_digits.pipeline:DigitsDiTPipeline"),
}
"""Shipped model name -> (folder under the weights folder, pipeline class)."""


def _tiny_unet(seed: int = 0) -> Any:
    """A ``DDIMPipeline`` with the digits UNet's layout at a quarter of its width, random weights (eval mode,
    as a loaded model is)."""
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    torch.manual_seed(seed)
    config = {**UNET_CONFIG, "block_out_channels": (8, 16, 16), "norm_num_groups": 4, "attention_head_dim": 8}
    return DDIMPipeline(unet=UNet2DModel(**config).eval(), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


def _tiny_dit(seed: int = 0) -> Any:
    """A ``DigitsDiTPipeline`` with two narrow DiT blocks and random weights (eval mode)."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    from cachekit_digits.pipeline import DigitsDiTPipeline

    torch.manual_seed(seed)
    config = {**DIT_CONFIG, "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 8}
    transformer = DiTTransformer2DModel(**config).eval()
    return DigitsDiTPipeline(transformer=transformer, scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


BUILDERS: dict[str, Callable[..., Any]] = {"tiny-unet": _tiny_unet, "tiny-dit": _tiny_dit}
"""Builder name -> function building a tiny pipeline with seeded random weights (options: ``seed``)."""

DIGITS_MODELS = frozenset(SHIPPED) | frozenset(BUILDERS)
"""Models whose samples are 16x16 digits, scored by :class:`~cachekit_digits.quality.DigitsScorer`."""


def load_pipeline(spec: ModelSpec) -> Any | None:
    """The shipped model or tiny builder ``spec`` names, its scheduler swapped if asked, on its
    device and dtype; ``None`` for any other model."""
    if spec.source not in SHIPPED and spec.builder not in BUILDERS:
        return None
    require_diffusers(spec)
    if spec.builder is not None:
        return prepare(BUILDERS[spec.builder](**spec.options), spec)
    folder, default_class = SHIPPED[spec.source]
    module, _, name = default_class.partition(":")
    return load_pretrained(spec, WEIGHTS_DIR / folder, getattr(importlib.import_module(module), name))
