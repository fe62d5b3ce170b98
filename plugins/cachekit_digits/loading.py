"""Loading experiment models: the shipped digits models, tiny builders, local folders and hub ids.

Every model goes through diffusers' ``from_pretrained`` (the shipped ones from the package's
own folder) or a builder; diffusers is imported here, inside functions only.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from cachekit.errors import ConfigError, did_you_mean, listing
from cachekit.experiment_config import ModelSpec
from cachekit.experiments import ExperimentError
from cachekit_digits.architectures import DIT_CONFIG, SCHEDULER_CONFIG, UNET_CONFIG
from cachekit_digits.models import WEIGHTS_DIR

SHIPPED: dict[str, tuple[str, str]] = {
    "digits-unet": ("unet", "diffusers:DDIMPipeline"),
    "digits-dit": ("dit", "cachekit_digits.pipeline:DigitsDiTPipeline"),
}
"""Shipped model name -> (folder under the weights folder, pipeline class)."""


def _tiny_unet(seed: int = 0) -> Any:
    """A ``DDIMPipeline`` with the digits UNet's layout at a quarter of its width, random weights."""
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    torch.manual_seed(seed)
    config = {**UNET_CONFIG, "block_out_channels": (8, 16, 16), "norm_num_groups": 4, "attention_head_dim": 8}
    return DDIMPipeline(unet=UNet2DModel(**config), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


def _tiny_dit(seed: int = 0) -> Any:
    """A ``DigitsDiTPipeline`` with two narrow DiT blocks and random weights."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    from cachekit_digits.pipeline import DigitsDiTPipeline

    torch.manual_seed(seed)
    config = {**DIT_CONFIG, "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 8}
    return DigitsDiTPipeline(transformer=DiTTransformer2DModel(**config), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


BUILDERS: dict[str, Callable[..., Any]] = {"tiny-unet": _tiny_unet, "tiny-dit": _tiny_dit}
"""Builder name -> function building a tiny pipeline with seeded random weights (options: ``seed``)."""

DIGITS_MODELS = frozenset(SHIPPED) | frozenset(BUILDERS)
"""Models whose samples are 16x16 digits, scored by :class:`~cachekit_digits.quality.DigitsScorer`."""


def _import(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _diffusers_class(name: str, suffix: str) -> Any:
    import diffusers

    found = getattr(diffusers, name, None)
    if not isinstance(found, type) or not name.endswith(suffix):
        known = [entry for entry in dir(diffusers) if entry.endswith(suffix)]
        raise ConfigError(f"{name!r} is not a diffusers {suffix} class{did_you_mean(name, known)}")
    return found


@contextmanager
def _no_loading_bar() -> Iterator[None]:
    """Hide diffusers' "Loading pipeline components" bar (the runner shows its own)."""
    from diffusers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


def _from_pretrained(spec: ModelSpec) -> Any:
    source = str(spec.source)
    if source in SHIPPED:
        folder, default_class = SHIPPED[source]
        pipeline_class = _diffusers_class(spec.pipeline, "Pipeline") if spec.pipeline else _import(default_class)
        return pipeline_class.from_pretrained(str(WEIGHTS_DIR / folder), **spec.options)
    from diffusers import DiffusionPipeline

    pipeline_class = _diffusers_class(spec.pipeline, "Pipeline") if spec.pipeline else DiffusionPipeline
    try:
        return pipeline_class.from_pretrained(source, **spec.options)
    except (OSError, ValueError) as error:
        raise ExperimentError(
            f"cannot load {source!r} (not a shipped model: {listing(SHIPPED)}; not a local folder; "
            f"a hub id needs a network): {error}"
        ) from error


def _swap_scheduler(pipeline: Any, spec: ModelSpec) -> None:
    if spec.scheduler is None and not spec.scheduler_options:
        return
    current = pipeline.scheduler
    scheduler_class = _diffusers_class(spec.scheduler, "Scheduler") if spec.scheduler else type(current)
    pipeline.scheduler = scheduler_class.from_config(current.config, **spec.scheduler_options)


def load_pipeline(spec: ModelSpec) -> Any:
    """The pipeline ``spec`` names, with its scheduler swapped if asked, on its device and dtype."""
    if importlib.util.find_spec("diffusers") is None:
        raise ExperimentError(f"loading {spec.label!r} needs diffusers; install it with: pip install 'cachekit[demo]'")
    if spec.builder is not None:
        if spec.builder not in BUILDERS:
            hint = did_you_mean(spec.builder, BUILDERS)
            raise ConfigError(f"unknown model builder {spec.builder!r}{hint}; known: {listing(BUILDERS)}")
        pipeline = BUILDERS[spec.builder](**spec.options)
    else:
        with _no_loading_bar():
            pipeline = _from_pretrained(spec)
    _swap_scheduler(pipeline, spec)
    dtype = getattr(torch, spec.dtype)
    return pipeline.to(spec.device) if dtype == torch.float32 else pipeline.to(spec.device, dtype)
