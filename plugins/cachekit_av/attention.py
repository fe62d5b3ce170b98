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

In a transformer the kind of each block sub-layer is known by family
(:mod:`cachekit_av.families`). In a diffusers UNet, whichever plugin maps its other regions,
the attention modules are found by class name (``Attention``) and by where they sit.
"""

from __future__ import annotations

from torch import nn

from cachekit import Region, TensorIO, isinstance_str, receives_context
from cachekit.trunk import Trunk
from cachekit_av.families import AVFamily

KINDS = ("spatial_attn", "temporal_attn", "cross_attn")
"""The attention kinds, as region names, in the order they are offered."""

TEMPORAL_CONTAINERS = ("TransformerTemporalModel", "AnimateDiffTransformer3D", "TemporalBasicTransformerBlock")
"""Modules whose self-attentions attend across frames (UNet3D, AnimateDiff, SVD)."""

UNET_SECTIONS = ("down_blocks", "mid_block", "up_blocks")
"""The parts of a diffusers UNet whose attention is counted, in the order they run (the mid
block runs between the others though registered after both)."""

_DESCRIPTIONS = {
    "spatial_attn": "self-attention among the tokens of a frame (or of the whole sample)",
    "temporal_attn": "self-attention across frames",
    "cross_attn": "attention to the conditioning",
}


def kind_regions(paths_by_kind: dict[str, list[str]], rows_mixed: tuple[str, ...] = ()) -> list[Region]:
    """One ``output``/``replay`` region per kind that has modules, in :data:`KINDS` order.

    The kinds in ``rows_mixed`` attend across batch rows (a UNet's temporal attention, whose
    rows are frames): their regions are not ``rows_independent``.
    """
    return [
        Region(
            name=kind,
            modules=tuple(paths_by_kind[kind]),
            mode="output",
            io=TensorIO(),
            inner="replay",
            description=f"{_DESCRIPTIONS[kind]}: {len(paths_by_kind[kind])} attention modules",
            rows_independent=kind not in rows_mixed,
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


def is_unet(model: nn.Module) -> bool:
    """True for a model laid out as a diffusers UNet: ``down_blocks`` and ``up_blocks`` module lists."""
    return all(isinstance(getattr(model, name, None), nn.ModuleList) for name in ("down_blocks", "up_blocks"))


def unet_attention(model: nn.Module) -> dict[str, list[str]]:
    """Attention module paths of a diffusers UNet by kind: the down blocks', the mid block's,
    then the up blocks', each part in the order its modules are registered.

    A module's kind comes from what it attends to: the conditioning (a cross attention fed a
    context), other frames (a self-attention inside a temporal layer), or its own frame.
    Attention outside the down, mid and up blocks (UNet3D's ``transformer_in``) is not counted.
    """
    context = receives_context(model)
    temporal_roots: list[str] = []
    ranked: list[tuple[int, int, str, str]] = []
    for order, (path, module) in enumerate(model.named_modules()):
        if any(isinstance_str(module, name) for name in TEMPORAL_CONTAINERS):
            temporal_roots.append(path)
        section = path.split(".", 1)[0]
        if not isinstance_str(module, "Attention") or section not in UNET_SECTIONS:
            continue
        if context and getattr(module, "is_cross_attention", False):
            kind = "cross_attn"
        elif any(path.startswith(f"{root}.") for root in temporal_roots):
            kind = "temporal_attn"
        else:
            kind = "spatial_attn"
        ranked.append((UNET_SECTIONS.index(section), order, path, kind))
    found: dict[str, list[str]] = {}
    for _, _, path, kind in sorted(ranked):
        found.setdefault(kind, []).append(path)
    return found
