"""Block trunks: the shared machinery of plugins for transformer backbones (DiTs and their kin).

A DiT-like model runs one or more ``nn.ModuleList`` of blocks in turn (Flux: 19 dual-stream
``transformer_blocks`` then 38 ``single_transformer_blocks``). This package numbers those
blocks as one sequence, the **trunk**, and builds cachekit regions over it:

* ``blocks[Fn:L-Bn]``: a residual range over the trunk, the first ``Fn`` and last ``Bn``
  blocks computed every step (First-Block-Cache, DBCache, TeaCache); the default is
  ``blocks[1:L]``, whose first block's residual is the ``entry_residual`` probe;
* ``<list>[a:b]``: a range within one block list (``single_transformer_blocks[2:36]``);
* ``<list>[a:b].<sub>``: the sub-layer ``<sub>`` (``attn1``, ``ff``, ...) of each block of
  the range, its output reused (FORA, PAB).

A plugin for its own transformer describes its layout once and answers two hooks::

    from cachekit import hookimpl
    from cachekit.trunk import SINGLE_STREAM, Family, trunk_region_named, trunk_regions

    MY_DIT = Family(classes=("MyDiT",), lists=("blocks",), io=SINGLE_STREAM)

    @hookimpl
    def cachekit_regions(model):
        trunk = MY_DIT.trunk(model)  # None: not a MyDiT, another plugin may know it
        return None if trunk is None else trunk_regions(model, trunk)

    @hookimpl
    def cachekit_region_named(model, name):
        trunk = MY_DIT.trunk(model)
        return None if trunk is None else trunk_region_named(model, trunk, name)

:class:`ExampleInputs` registers the example forward call of each class for
``cachekit_example_inputs``. Everything here imports torch and cachekit only.
"""

from cachekit.trunk.blocks import BlockList, SkipPairs, Trunk
from cachekit.trunk.examples import Builder, ExampleInputs, noise, timesteps
from cachekit.trunk.family import Family, family_of
from cachekit.trunk.names import TRUNK, BlockSpan, parse
from cachekit.trunk.regions import (
    FIRST_BLOCKS,
    LAST_BLOCKS,
    SUBLAYERS,
    block_range,
    default_names,
    has_sublayer,
    sublayer_region,
    trunk_region_named,
    trunk_regions,
)
from cachekit.trunk.streams import DUAL_STREAM, DUAL_STREAM_IN_ORDER, SINGLE_STREAM

__all__ = [
    "DUAL_STREAM",
    "DUAL_STREAM_IN_ORDER",
    "FIRST_BLOCKS",
    "LAST_BLOCKS",
    "SINGLE_STREAM",
    "SUBLAYERS",
    "TRUNK",
    "BlockList",
    "BlockSpan",
    "Builder",
    "ExampleInputs",
    "Family",
    "SkipPairs",
    "Trunk",
    "block_range",
    "default_names",
    "family_of",
    "has_sublayer",
    "noise",
    "parse",
    "sublayer_region",
    "timesteps",
    "trunk_region_named",
    "trunk_regions",
]
