"""cachekit plugin for diffusers UNets: DeepCache's branches on every UNet family.

Maps ``UNet2DModel``, ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL, AudioLDM, MusicLDM),
AudioLDM2's UNet, ``UNetSpatioTemporalConditionModel`` (SVD), ``UNet3DConditionModel`` and
``UNetMotionModel`` (AnimateDiff). Region ``branch<k>`` is everything deeper than skip
connection ``k`` (see :mod:`cachekit_unet.layout`); ``branch0``, the largest region and
DeepCache's default, comes first. A UNet with cross attention (SD, SDXL, SVD, the video
UNets) also has ``text_kv``, last: the keys and values of every cross attention, computed
once per generation and context and reused exactly (:mod:`cachekit.text_kv`). This plugin
alone answers ``cachekit_regions`` for every UNet, video and audio ones included; the
audio-video plugin adds their attention kinds through ``cachekit_extra_regions``. Classes
are recognised by name, so importing this plugin never imports diffusers.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit import Region, cross_attention_paths, hookimpl, text_kv_region
from cachekit.experiments import EntryKey
from cachekit_unet.experiments import BRANCH
from cachekit_unet.inputs import example_inputs
from cachekit_unet.layout import branch_regions, folds_frames, read_layout


@hookimpl(trylast=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """The branches of a known UNet, ``branch0`` first, then ``text_kv`` if it has cross attention;
    ``None`` for anything else."""
    layout = read_layout(model)
    if layout is None:
        return None
    text_kv = text_kv_region(model, cross_attention_paths(model))
    return branch_regions(layout, rows_independent=not folds_frames(model)) + ([text_kv] if text_kv else [])


@hookimpl(trylast=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """A small valid forward call of a known UNet (batch 1, at most 32x32 latent)."""
    return example_inputs(model) if read_layout(model) is not None else None


@hookimpl(trylast=True)
def cachekit_experiment_entry_keys() -> dict[str, EntryKey]:
    """``branch: k`` in experiment entries: the region ``branch{k}``."""
    return {"branch": BRANCH}
