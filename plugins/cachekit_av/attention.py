"""Attention sub-layers grouped by kind: one region per kind, its outputs reused together.

Pyramid Attention Broadcast (PAB) observed that between neighbouring denoising steps
cross attention changes least, temporal attention more, and spatial attention most, so
each kind can be reused for its own number of steps. The kinds, as region names:

* ``spatial_attn``: self-attention among the tokens of one frame; in a transformer whose
  attention runs over every token of the video at once (CogVideoX, Wan, LTX, HunyuanVideo,
  Mochi), that joint attention; in an audio model, the self-attention over the latent.
* ``temporal_attn``: self-attention across frames at each position (the temporal layers
  of text-to-video UNets, SVD and AnimateDiff's motion modules).
* ``cross_attn``: attention from the latent to the conditioning (text, image or audio
  embeddings).

A kind's region lists its attention modules in execution order; on a reuse step each
returns its output of the last refresh, and the block around it runs as usual.
"""

from __future__ import annotations

from cachekit_dit.trunk import Trunk
from cachekit_unet.layout import UNetLayout
from torch import nn

from cachekit.modules import isinstance_str
from cachekit.region import Region, TensorIO
from cachekit_av.families import AVFamily, receives_context

KINDS = ("spatial_attn", "temporal_attn", "cross_attn")
"""The attention kinds, as region names, in the order they are offered."""

TEMPORAL_CONTAINERS = ("TransformerTemporalModel", "AnimateDiffTransformer3D", "TemporalBasicTransformerBlock")
"""Modules whose self-attentions attend across frames (UNet3D, AnimateDiff, SVD)."""

_DESCRIPTIONS = {
    "spatial_attn": "self-attention among the tokens of a frame (or of the whole sample)",
    "temporal_attn": "self-attention across frames",
    "cross_attn": "attention to the conditioning",
}


def kind_regions(paths_by_kind: dict[str, list[str]]) -> list[Region]:
    """One ``output``/``replay`` region per kind that has modules, in :data:`KINDS` order."""
    return [
        Region(
            name=kind,
            modules=tuple(paths_by_kind[kind]),
            mode="output",
            io=TensorIO(),
            inner="replay",
            description=f"{_DESCRIPTIONS[kind]}: {len(paths_by_kind[kind])} attention modules",
        )
        for kind in KINDS
        if paths_by_kind.get(kind)
    ]


def trunk_attention(model: nn.Module, av_family: AVFamily, trunk: Trunk) -> dict[str, list[str]]:
    """Attention module paths of a video or audio transformer by kind, block by block."""
    found: dict[str, list[str]] = {}
    for block_list in trunk.lists:
        for index in range(block_list.length):
            block = model.get_submodule(block_list.path(index))
            for sublayer, kind in av_family.attention.items():
                if isinstance(getattr(block, sublayer, None), nn.Module):
                    found.setdefault(kind, []).append(f"{block_list.path(index)}.{sublayer}")
    return found


def unet_attention(model: nn.Module, layout: UNetLayout) -> dict[str, list[str]]:
    """Attention module paths of a diffusers UNet by kind, in execution order.

    A module's kind comes from what it attends to: the conditioning (a cross attention fed a
    context), other frames (a self-attention inside a temporal layer), or its own frame.
    Only modules inside the layout's stages (the down, mid and up blocks) are counted.
    """
    stages = [module for stage in layout.down for module in stage.modules]
    stages += [layout.mid] if layout.mid else []
    stages += [module for stage in layout.up for module in stage.modules]
    context = receives_context(model)
    temporal_roots: list[str] = []
    ranked: list[tuple[int, int, str, str]] = []
    for order, (path, module) in enumerate(model.named_modules()):
        if any(isinstance_str(module, name) for name in TEMPORAL_CONTAINERS):
            temporal_roots.append(path)
        if not isinstance_str(module, "Attention"):
            continue
        rank = next((i for i, stage in enumerate(stages) if path.startswith(f"{stage}.")), None)
        if rank is None:
            continue
        if context and getattr(module, "is_cross_attention", False):
            kind = "cross_attn"
        elif any(path.startswith(f"{root}.") for root in temporal_roots):
            kind = "temporal_attn"
        else:
            kind = "spatial_attn"
        ranked.append((rank, order, path, kind))
    found: dict[str, list[str]] = {}
    for _, _, path, kind in sorted(ranked):
        found.setdefault(kind, []).append(path)
    return found
