"""Loading experiment models with diffusers' ``from_pretrained``: local folders and hub ids.

The plugin's ``cachekit_load_experiment_model`` answers, last, for every ``source`` no other
plugin loads. Plugins that ship or build diffusers pipelines use :func:`load_pretrained`
(with a folder of their own) and :func:`prepare`. diffusers is imported inside functions only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cachekit import ConfigError, ExperimentError, ModelSpec, did_you_mean, hookimpl, listing
from cachekit.experiments import named_models


def require_diffusers(spec: ModelSpec) -> None:
    """Raise a clear error, naming the extra to install, when diffusers is missing."""
    if importlib.util.find_spec("diffusers") is None:
        raise ExperimentError(f"loading {spec.label!r} needs diffusers; install it with: pip install 'cachekit[demo]'")


def diffusers_class(name: str, suffix: str) -> Any:
    """The diffusers class ``name`` ending in ``suffix`` ('Pipeline', 'Scheduler'), or a clear error."""
    import diffusers

    found = getattr(diffusers, name, None)
    if not isinstance(found, type) or not name.endswith(suffix):
        known = [entry for entry in dir(diffusers) if entry.endswith(suffix)]
        raise ConfigError(f"{name!r} is not a diffusers {suffix} class{did_you_mean(name, known)}")
    return found


def load_pretrained(spec: ModelSpec, folder: str | Path | None = None, default_class: Any = None) -> Any:
    """``from_pretrained`` as ``spec`` asks, then :func:`prepare`.

    Args:
        spec: the pipeline class (else ``default_class``, else ``DiffusionPipeline``) and the
            ``from_pretrained`` options.
        folder: a plugin's own saved pipeline; by default ``spec.source``, a local folder or a
            hub id, whose failure to load is explained in an :class:`~cachekit.ExperimentError`.
        default_class: the pipeline class when ``spec`` names none.
    """
    require_diffusers(spec)
    from diffusers import DiffusionPipeline

    pipeline_class = diffusers_class(spec.pipeline, "Pipeline") if spec.pipeline else default_class or DiffusionPipeline
    with _no_loading_bar():
        if folder is not None:
            pipeline = pipeline_class.from_pretrained(str(folder), **spec.options)
        else:
            pipeline = _from_source(pipeline_class, spec)
    return prepare(pipeline, spec)


def prepare(pipeline: Any, spec: ModelSpec) -> Any:
    """``pipeline`` with the scheduler ``spec`` asks for, on ``spec``'s device and dtype."""
    if spec.scheduler is not None or spec.scheduler_options:
        current = pipeline.scheduler
        scheduler_class = diffusers_class(spec.scheduler, "Scheduler") if spec.scheduler else type(current)
        pipeline.scheduler = scheduler_class.from_config(current.config, **spec.scheduler_options)
    dtype = getattr(torch, spec.dtype)
    return pipeline.to(spec.device) if dtype == torch.float32 else pipeline.to(spec.device, dtype)


@hookimpl(trylast=True)
def cachekit_load_experiment_model(spec: ModelSpec) -> Any | None:
    """Any local folder or hub id, with ``from_pretrained``; ``None`` for builders and for the
    names another plugin ships (``cachekit_experiment_models``), which that plugin loads."""
    if spec.source is None or any(model.source == spec.source for model in named_models()):
        return None
    return load_pretrained(spec)


def _from_source(pipeline_class: Any, spec: ModelSpec) -> Any:
    source = str(spec.source)
    try:
        return pipeline_class.from_pretrained(source, **spec.options)
    except (OSError, ValueError) as error:
        shipped = [model.source for model in named_models() if model.source is not None]
        raise ExperimentError(
            f"cannot load {source!r}{did_you_mean(source, shipped)} (not a shipped model: {listing(shipped)}; "
            f"not a local folder; a hub id needs a network): {error}"
        ) from error


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
