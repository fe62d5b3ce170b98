"""cachekit plugin for DiT transformers: diffusers' DiT, PixArt, SD3, Flux (and Bria,
LongCat-Image, Ovis-Image, laid out as Flux), Sana, HunyuanDiT, and timm-based DiTs laid out as
in the DiT paper's code.

Regions, by name (see :mod:`cachekit.trunk.names`):

* ``blocks[Fn:L-Bn]``: a residual range over the trunk's blocks, the first ``Fn`` and last
  ``Bn`` computed every step. The default is ``blocks[1:L]``. Its similarity probe
  ``entry_residual`` is the residual of the first ``Fn`` blocks (First-Block-Cache's signal).
* ``<list>[a:b]``: a range within one block list (Flux's ``single_transformer_blocks[2:36]``).
* ``<list>[a:b].<sub>``: the sub-layer ``<sub>`` (``attn1``, ``ff``, ...) of each block in the
  range, its output reused (FORA / PAB style).
* ``text_kv`` (PixArt, Sana, HunyuanDiT: models with cross attention), last: the keys and
  values of every cross attention, computed once per generation and context and reused
  exactly (:mod:`cachekit.text_kv`). Named on SD3 or Flux, whose attention is joint, it is a
  clear error.

The trunk and its regions are :mod:`cachekit.trunk`'s; this plugin says which models are
DiTs (:mod:`cachekit_dit.families`) and how to call them (:mod:`cachekit_dit.inputs`).
Classes are recognised by name; diffusers is imported only to build HunyuanDiT's example
rotary embedding.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit import TEXT_KV, Region, cross_attention_paths, hookimpl, joint_attention_refusal, text_kv_region
from cachekit.trunk import DUAL_STREAM, trunk_region_named, trunk_regions
from cachekit_dit.families import trunk_of
from cachekit_dit.inputs import EXAMPLES


@hookimpl(trylast=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """The default block range, a range per block list, the sub-layer regions, then ``text_kv``
    if the model has cross attention."""
    trunk = trunk_of(model)
    if trunk is None:
        return None
    text_kv = text_kv_region(model, cross_attention_paths(model))
    return trunk_regions(model, trunk) + ([text_kv] if text_kv else [])


@hookimpl(trylast=True)
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    """Any block range or sub-layer region named as in :mod:`cachekit.trunk.names`; ``text_kv``
    named on a joint-attention model (SD3, Flux) is refused, saying why."""
    trunk = trunk_of(model)
    if trunk is None:
        return None
    if name == TEXT_KV and trunk.lists[0].io == DUAL_STREAM:
        raise joint_attention_refusal(model)
    return trunk_region_named(model, trunk, name)


@hookimpl(trylast=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """One seeded call with batch size 1, sized from the model's config."""
    return None if trunk_of(model) is None else EXAMPLES.inputs(model)
