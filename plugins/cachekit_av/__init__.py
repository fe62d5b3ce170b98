"""cachekit plugin for audio and video diffusion models.

Maps the video transformers ``CogVideoXTransformer3DModel``, ``WanTransformer3DModel``
(both experts of Wan 2.2 are found by the diffusers plugin as ``transformer`` and
``transformer_2``), ``LTXVideoTransformer3DModel``, ``HunyuanVideoTransformer3DModel`` and
``MochiTransformer3DModel``, Stable Audio's ``StableAudioDiTModel``, and adds attention
regions to the video and audio UNets (SVD, text-to-video ``UNet3DConditionModel``,
AnimateDiff's ``UNetMotionModel``, the UNets of AudioLDM, AudioLDM 2 and MusicLDM); any other
UNet the UNet plugin maps has them by name.

Regions:

* the transformers' block ranges and sub-layers, exactly as :mod:`cachekit_dit` builds them
  (default ``blocks[1:L]``); the UNets' DeepCache branches from :mod:`cachekit_unet`
  (default ``branch0``);
* ``spatial_attn``, ``temporal_attn``, ``cross_attn``: every attention module of one kind,
  reused together (see :mod:`cachekit_av.attention`), so each kind can have its own policy.

Classes are recognised by name; diffusers is imported only to build example rotary embeddings.
"""

from __future__ import annotations

from typing import Any

from cachekit_dit.regions import named_region, offered_regions
from cachekit_unet.layout import branch_regions, read_layout
from torch import nn

from cachekit import Region, hookimpl
from cachekit_av.attention import kind_regions, trunk_attention, unet_attention
from cachekit_av.families import av_trunk_of, is_av_unet
from cachekit_av.inputs import example_kwargs


def _kind_regions(model: nn.Module) -> list[Region]:
    """The attention-kind regions of a mapped transformer or UNet; none for other models."""
    found = av_trunk_of(model)
    if found is not None:
        return kind_regions(trunk_attention(model, *found))
    layout = read_layout(model)
    return [] if layout is None else kind_regions(unet_attention(model, layout))


@hookimpl(trylast=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """Block ranges, sub-layers and attention kinds of a video or audio transformer; DeepCache
    branches and attention kinds of a video or audio UNet; ``None`` for anything else."""
    found = av_trunk_of(model)
    if found is not None:
        return offered_regions(model, found[1]) + _kind_regions(model)
    layout = read_layout(model) if is_av_unet(model) else None
    return None if layout is None else branch_regions(layout) + _kind_regions(model)


@hookimpl(trylast=True)
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    """A block range or sub-layer of a video or audio transformer (named as in
    :mod:`cachekit_dit.names`), or an attention kind of any mapped transformer or UNet."""
    found = av_trunk_of(model)
    if found is not None:
        region = named_region(model, found[1], name)
        if region is not None:
            return region
    return next((region for region in _kind_regions(model) if region.name == name), None)


@hookimpl(trylast=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """One seeded call with batch size 1 of a video or audio transformer."""
    if av_trunk_of(model) is None:
        return None
    kwargs = example_kwargs(model)
    return None if kwargs is None else ((), kwargs)
