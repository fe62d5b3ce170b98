"""cachekit plugin for diffusers pipelines and schedulers (no region mapping of its own).

Finds the denoisers of any ``DiffusionPipeline`` (``unet``, ``transformer``, both experts
of a two-expert pipeline, ``prior``) with the pipeline's scheduler, and tells the clock
when a scheduler with multi-call steps (PNDM) has finished a step. For experiments it loads
any local folder or hub id (:mod:`cachekit_diffusers.loading`) and calls pipelines the
diffusers way (:mod:`cachekit_diffusers.calling`). Classes are recognised by name, so
importing this plugin never imports diffusers.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit import Denoiser, hookimpl, isinstance_str
from cachekit_diffusers.calling import cachekit_experiment_caller as cachekit_experiment_caller
from cachekit_diffusers.loading import cachekit_load_experiment_model as cachekit_load_experiment_model
from cachekit_diffusers.loading import load_pretrained, prepare, require_diffusers

__all__ = ["load_pretrained", "prepare", "require_diffusers"]
"""This plugin's public API for plugins that ship or build diffusers pipelines (cachekit_digits)."""

DENOISER_ATTRIBUTES = ("unet", "transformer", "transformer_2", "prior")
"""Pipeline components called once per step and context, in the order they are reported."""


@hookimpl(trylast=True)
def cachekit_find_denoisers(pipeline: Any) -> list[Denoiser] | None:
    """The denoising components of a diffusers pipeline, each with the pipeline's scheduler."""
    if not isinstance_str(pipeline, "DiffusionPipeline"):
        return None
    scheduler = getattr(pipeline, "scheduler", None)
    found = [
        Denoiser(name, module, scheduler)
        for name in DENOISER_ATTRIBUTES
        if isinstance(module := getattr(pipeline, name, None), nn.Module)
    ]
    return found or None


@hookimpl(trylast=True)
def cachekit_step_completed(scheduler: Any) -> bool | None:
    """PNDM runs Runge-Kutta warm-up steps of 4 calls, or (SD's default, PRK skipped) a first
    step of 2 calls on the same timestep pair; every later call is a whole step."""
    if not isinstance_str(scheduler, "PNDMScheduler"):
        return None
    warmup_calls = 0 if scheduler.config.skip_prk_steps else len(scheduler.prk_timesteps)
    if scheduler.counter <= warmup_calls:
        return scheduler.counter % 4 == 0
    return scheduler.counter != 1
