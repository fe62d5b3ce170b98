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

The trunk and its regions are :mod:`cachekit.trunk`'s; this plugin says which models are
DiTs (:mod:`cachekit_dit.families`) and how to call them (:mod:`cachekit_dit.inputs`).
Classes are recognised by name; diffusers is imported only to build HunyuanDiT's example
rotary embedding.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cachekit import Region, hookimpl
from cachekit.trunk import trunk_region_named, trunk_regions
from cachekit_dit.families import trunk_of
from cachekit_dit.inputs import EXAMPLES


@hookimpl(trylast=True)
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """The default block range, a range per block list, and the sub-layer regions."""
    trunk = trunk_of(model)
    return None if trunk is None else trunk_regions(model, trunk)


@hookimpl(trylast=True)
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    """Any block range or sub-layer region named as in :mod:`cachekit.trunk.names`."""
    trunk = trunk_of(model)
    return None if trunk is None else trunk_region_named(model, trunk, name)


@hookimpl(trylast=True)
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """One seeded call with batch size 1, sized from the model's config."""
    return None if trunk_of(model) is None else EXAMPLES.inputs(model)
