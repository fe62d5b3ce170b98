"""cachekit plugin for audio and video diffusion models.

Maps the video transformers ``CogVideoXTransformer3DModel``, ``WanTransformer3DModel``
(both experts of Wan 2.2 are found by the diffusers plugin as ``transformer`` and
``transformer_2``), ``LTXVideoTransformer3DModel``, ``HunyuanVideoTransformer3DModel`` and
``MochiTransformer3DModel``, and Stable Audio's ``StableAudioDiTModel``. To the video and
audio UNets (SVD, text-to-video ``UNet3DConditionModel``, AnimateDiff's ``UNetMotionModel``,
the UNets of AudioLDM, AudioLDM 2 and MusicLDM), whose DeepCache branches the UNet plugin
maps, it adds attention regions (:func:`cachekit_extra_regions`); any other diffusers UNet
has them by name.

Regions:

* the transformers' block ranges and sub-layers, built by :mod:`cachekit.trunk` exactly as
  for the image DiTs (default ``blocks[1:L]``);
* ``spatial_attn``, ``temporal_attn``, ``cross_attn``: every attention module of one kind,
  reused together (see :mod:`cachekit_av.attention`), so each kind can have its own policy;
* ``text_kv`` (Wan, LTX-Video, Stable Audio), last: the keys and values of every cross
  attention, computed once per generation and context and reused exactly
  (:mod:`cachekit.text_kv`); named on a joint-attention transformer (CogVideoX, HunyuanVideo,
  Mochi) it is a clear error. The video and audio UNets get it from the UNet plugin.

Classes are recognised by name; diffusers is imported only to build example rotary embeddings.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit import TEXT_KV, Region, hookimpl, joint_attention_refusal, text_kv_region
from cachekit.trunk import trunk_region_named, trunk_regions
from cachekit_av.attention import is_unet, kind_regions, trunk_attention, unet_attention
from cachekit_av.families import av_trunk_of, is_av_unet
from cachekit_av.inputs import EXAMPLES


def _kind_regions(model: nn.Module) -> list[Region]:
    """The attention-kind regions of a mapped transformer or of a diffusers UNet; none for other models."""
    found = av_trunk_of(model)
    if found is not None:
        return kind_regions(trunk_attention(model, *found))
    return kind_regions(unet_attention(model), rows_mixed=("temporal_attn",)) if is_unet(model) else []


@hookimpl(trylast=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """Block ranges, sub-layers and attention kinds of a video or audio transformer; ``None``
    for anything else."""
    found = av_trunk_of(model)
    if found is None:
        return None
    text_kv = text_kv_region(model, trunk_attention(model, *found).get("cross_attn", []))
    return trunk_regions(model, found[1]) + _kind_regions(model) + ([text_kv] if text_kv else [])


@hookimpl(trylast=True)
def cachekit_extra_regions(model: nn.Module) -> list[Region] | None:
    """The attention kinds of a video or audio UNet, after the UNet plugin's branches."""
    return (_kind_regions(model) or None) if is_av_unet(model) else None


@hookimpl(trylast=True)
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    """A block range or sub-layer of a video or audio transformer (named as in
    :mod:`cachekit.trunk.names`), or an attention kind of a mapped transformer or any UNet;
    ``text_kv`` named on a joint-attention transformer is refused, saying why."""
    found = av_trunk_of(model)
    if found is not None and name == TEXT_KV and "cross_attn" not in found[0].attention.values():
        raise joint_attention_refusal(model)
    if found is not None:
        region = trunk_region_named(model, found[1], name)
        if region is not None:
            return region
    return next((region for region in _kind_regions(model) if region.name == name), None)


@hookimpl(trylast=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """One seeded call with batch size 1 of a video or audio transformer."""
    return None if av_trunk_of(model) is None else EXAMPLES.inputs(model)
