"""The regions of a trunk: residual block ranges and sub-layer (attention, MLP) regions.

:func:`trunk_regions` answers :func:`~cachekit.hookspecs.cachekit_regions` for a model with a
trunk, :func:`trunk_region_named` answers :func:`~cachekit.hookspecs.cachekit_region_named`
for any name of :mod:`cachekit.trunk.names`.
"""

from __future__ import annotations

from torch import nn

from cachekit import Region, RegionNotFoundError, TensorIO, listing
from cachekit.trunk.blocks import Trunk
from cachekit.trunk.names import TRUNK, BlockSpan, parse

FIRST_BLOCKS = 1
"""Default ``Fn``: blocks computed at every step before the cached range (its probe)."""

LAST_BLOCKS = 0
"""Default ``Bn``: blocks computed at every step after the cached range."""

SUBLAYERS = ("attn", "attn1", "attn2", "ff", "ff_context", "mlp", "proj_mlp")
"""Children of a block offered as sub-layer regions when every block of a list has them."""


def block_range(trunk: Trunk, span: BlockSpan) -> Region:
    """A residual region over consecutive blocks; the blocks before it are its probe base.

    On reuse the blocks hand their input on and the last one returns the input plus the
    residual stored at the last refresh, for each stream the blocks carry.

    Raises:
        RegionNotFoundError: the span crosses block lists of different signatures, or
            holds one end of a long skip connection only.
    """
    start, stop = span.trunk_range(trunk)
    ios = {trunk.locate(index)[0].io for index in range(start, stop)}
    if len(ios) > 1:
        raise RegionNotFoundError(
            f"region {span.name!r} spans block lists whose blocks take different inputs; "
            f"select one range per list: {trunk.describe()}"
        )
    trunk.check_skips(span.name, start, stop)
    paths = span.block_paths(trunk)
    return Region(
        name=span.name,
        modules=paths,
        mode="residual",
        io=ios.pop(),
        inner="passthrough",
        probe_base=trunk.first_block if start > 0 else None,
        description=(
            f"residual over {paths[0]} .. {paths[-1]}; the first {start} and last {trunk.length - stop} "
            "blocks run every step"
        ),
    )


def sublayer_region(model: nn.Module, trunk: Trunk, span: BlockSpan) -> Region:
    """The sub-layer ``span.sublayer`` of each block of the span, whose outputs are reused together.

    FORA / PAB style: the block around it runs every step; on a reuse step each sub-layer
    returns its output of the last refresh.

    Raises:
        RegionNotFoundError: a block of the span has no such sub-layer (its children are listed).
    """
    block_paths = span.block_paths(trunk)
    for path in block_paths:
        block = model.get_submodule(path)
        if not has_sublayer(block, str(span.sublayer)):
            children = [name for name, child in block.named_children()]
            raise RegionNotFoundError(
                f"region {span.name!r}: block {path} ({type(block).__name__}) has no sub-layer "
                f"{span.sublayer!r}; its children: {listing(children)}"
            )
    return Region(
        name=span.name,
        modules=tuple(f"{path}.{span.sublayer}" for path in block_paths),
        mode="output",
        io=TensorIO(),
        inner="replay",
        description=f"output of {span.sublayer} in {block_paths[0]} .. {block_paths[-1]}",
    )


def has_sublayer(block: nn.Module, path: str) -> bool:
    """True when ``block`` has a submodule at dotted ``path`` (``None`` attributes do not count)."""
    try:
        block.get_submodule(path)
    except AttributeError:
        return False
    return True


def default_names(model: nn.Module, trunk: Trunk) -> list[str]:
    """Names of the regions offered for ``model``, the default first.

    The default is ``blocks[Fn:L-Bn]`` with ``Fn = 1, Bn = 0``; a one-block model caches its
    only block (``blocks[0:1]``). A model with several block lists also gets a range per
    list; then each list's sub-layers come, one region per name of :data:`SUBLAYERS` that
    every block of the list has.
    """
    length = trunk.length
    first = min(FIRST_BLOCKS, length - 1)
    names = [f"{TRUNK}[{first}:{length - LAST_BLOCKS}]"]
    if len(trunk.lists) > 1:
        starts = [first] + [0] * (len(trunk.lists) - 1)
        names += [
            f"{bl.name}[{start}:{bl.length}]"
            for bl, start in zip(trunk.lists, starts, strict=True)
            if start < bl.length
        ]
    for block_list in trunk.lists:
        blocks = [model.get_submodule(block_list.path(index)) for index in range(block_list.length)]
        names += [
            f"{block_list.name}[0:{block_list.length}].{sub}"
            for sub in SUBLAYERS
            if all(has_sublayer(block, sub) for block in blocks)
        ]
    return names


def trunk_regions(model: nn.Module, trunk: Trunk) -> list[Region]:
    """The regions :func:`default_names` lists, built: an answer to ``cachekit_regions``."""
    names = default_names(model, trunk)
    return [region for name in names if (region := trunk_region_named(model, trunk, name)) is not None]


def trunk_region_named(model: nn.Module, trunk: Trunk, name: str) -> Region | None:
    """The region called ``name``: an answer to ``cachekit_region_named``.

    Returns ``None`` when ``name`` is no block name (see :mod:`cachekit.trunk.names`).

    Raises:
        RegionNotFoundError: ``name`` is a block name that does not fit the model.
    """
    span = parse(name, trunk)
    if span is None:
        return None
    return block_range(trunk, span) if span.sublayer is None else sublayer_region(model, trunk, span)
