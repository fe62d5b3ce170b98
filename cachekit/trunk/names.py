"""Region names with parameters: block ranges and sub-layers, written like Python slices.

* ``blocks[1:28]``: a residual range over blocks 1 to 27 of the whole trunk; ``blocks[Fn:-Bn]``
  keeps the first ``Fn`` and last ``Bn`` blocks computed; ``blocks[2:]`` runs to the end.
* ``single_transformer_blocks[2:36]``: the same within one block list.
* ``transformer_blocks[0:28].attn1``: the ``attn1`` sub-layer of each block in the range,
  cached together; ``transformer_blocks[3].ff`` names one block's sub-layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cachekit import RegionNotFoundError
from cachekit.trunk.blocks import BlockList, Trunk

TRUNK = "blocks"
"""The list name meaning every block list of the model, in execution order."""

_PATTERN = re.compile(
    r"(?P<list>[A-Za-z_]\w*)\[(?P<start>-?\d*)(?P<colon>:(?P<stop>-?\d*))?\](?:\.(?P<sub>[A-Za-z_][\w.]*))?"
)


@dataclass(frozen=True)
class BlockSpan:
    """What a name selects: blocks ``start`` to ``stop - 1`` and, optionally, one sub-layer of each.

    Indices count within ``block_list`` when one is named, else along the whole trunk.
    """

    name: str
    block_list: BlockList | None
    start: int
    stop: int
    sublayer: str | None

    def trunk_range(self, trunk: Trunk) -> tuple[int, int]:
        """The span as trunk indices ``(start, stop)``."""
        offset = 0 if self.block_list is None else trunk.offset(self.block_list)
        return offset + self.start, offset + self.stop

    def block_paths(self, trunk: Trunk) -> tuple[str, ...]:
        """Module paths of the selected blocks, in execution order."""
        start, stop = self.trunk_range(trunk)
        return tuple(block_list.path(local) for block_list, local in map(trunk.locate, range(start, stop)))


def parse(name: str, trunk: Trunk) -> BlockSpan | None:
    """The span ``name`` selects in ``trunk``, ``None`` when it is not a block name at all.

    Raises:
        RegionNotFoundError: the name is a block name but does not fit the model (no such
            list, an empty range, an index past the last block).
    """
    match = _PATTERN.fullmatch(name)
    if match is None:
        return None
    block_list = None if match["list"] == TRUNK else trunk.list_named(match["list"])
    length = trunk.length if block_list is None else block_list.length
    start, stop = _bounds(name, match, length, trunk)
    return BlockSpan(name, block_list, start, stop, match["sub"])


def _bounds(name: str, match: re.Match[str], length: int, trunk: Trunk) -> tuple[int, int]:
    def index(text: str | None, default: int) -> int:
        if not text:
            return default
        value = int(text)
        if not -length <= value <= length:
            raise RegionNotFoundError(
                f"region {name!r}: index {value} is out of range; {trunk.model_name} has {length} blocks "
                f"there ({trunk.describe()}), so indices run from {-length} to {length}"
            )
        return value + length if value < 0 else value

    start = index(match["start"], 0)
    if match["colon"] is None:
        if not match["start"] or start >= length:
            raise RegionNotFoundError(
                f"region {name!r}: give a block index below {length} or a range such as [1:{length}]"
            )
        return start, start + 1
    stop = index(match["stop"], length)
    if stop <= start:
        raise RegionNotFoundError(
            f"region {name!r} selects no blocks: {trunk.model_name} has {length} blocks there "
            f"({trunk.describe()}); a range [Fn:L-Bn] needs Fn + Bn < {length}"
        )
    return start, stop
