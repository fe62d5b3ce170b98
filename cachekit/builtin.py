"""The core's own plugin: the fallbacks every other plugin can override."""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit.clock import default_step_completed
from cachekit.denoiser import Denoiser
from cachekit.plugin_manager import hookimpl


@hookimpl(trylast=True)
def cachekit_find_denoisers(pipeline: Any) -> list[Denoiser] | None:
    """A bare ``nn.Module`` is its own denoiser, with no scheduler."""
    return [Denoiser("model", pipeline)] if isinstance(pipeline, nn.Module) else None


@hookimpl(trylast=True)
def cachekit_step_completed(scheduler: Any) -> bool | None:
    """Second-order schedulers say so through ``state_in_first_order``; others finish each call."""
    return default_step_completed(scheduler)
