"""A model's trunk: its block lists in execution order, numbered as one sequence.

Flux runs 19 dual-stream blocks then 38 single-stream ones; its trunk numbers them 0 to 56,
so ``blocks[1:57]`` means "every block but the first" whichever list a block lives in. A
model with one list (``transformer_blocks`` or ``blocks``) has a trunk of that list alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cachekit import RegionIO, RegionNotFoundError


@dataclass(frozen=True)
class BlockList:
    """One ``nn.ModuleList`` of blocks.

    Attributes:
        name: its attribute name on the model (``"single_transformer_blocks"``).
        length: how many blocks it holds.
        io: how its blocks take and return their streams (see :mod:`cachekit.trunk.streams`).
    """

    name: str
    length: int
    io: RegionIO

    def path(self, index: int) -> str:
        """Module path of block ``index`` of this list."""
        return f"{self.name}.{index}"


SkipPairs = Callable[[int], list[tuple[int, int]]]
"""For a trunk of ``n`` blocks, the ``(producer, consumer)`` pairs of its long skip connections."""


@dataclass(frozen=True)
class Trunk:
    """A model's block lists, run one after the other.

    Attributes:
        model_name: the model's class name, for messages.
        lists: the block lists in execution order, none of them empty.
        skip_pairs: long skip connections (HunyuanDiT: the first half's outputs feed the
            second half), or ``None`` for a plain chain.
    """

    model_name: str
    lists: tuple[BlockList, ...]
    skip_pairs: SkipPairs | None = None

    @property
    def length(self) -> int:
        """Blocks in all lists together."""
        return sum(block_list.length for block_list in self.lists)

    @property
    def first_block(self) -> str:
        """Path of the first block the model runs."""
        return self.lists[0].path(0)

    def list_named(self, name: str) -> BlockList:
        """The list called ``name``, or a clear error naming the model's lists."""
        for block_list in self.lists:
            if block_list.name == name:
                return block_list
        raise RegionNotFoundError(
            f"{self.model_name} has no block list {name!r}; its lists: {self.describe()}, "
            "or 'blocks' for all of them in order"
        )

    def locate(self, index: int) -> tuple[BlockList, int]:
        """The list holding trunk block ``index`` and the block's index in it."""
        for block_list in self.lists:
            if index < block_list.length:
                return block_list, index
            index -= block_list.length
        raise IndexError(index)

    def offset(self, block_list: BlockList) -> int:
        """Trunk index of ``block_list``'s first block."""
        start = 0
        for candidate in self.lists:
            if candidate is block_list:
                return start
            start += candidate.length
        raise ValueError(block_list.name)

    def describe(self) -> str:
        """``"transformer_blocks (19 blocks), single_transformer_blocks (38 blocks)"``."""
        return ", ".join(f"{block_list.name!r} ({block_list.length} blocks)" for block_list in self.lists)

    def check_skips(self, name: str, start: int, stop: int) -> None:
        """Refuse a range whose reuse would feed a stale long-skip tensor to a block outside it.

        On a reuse step the blocks of a range hand their input on unchanged, so a block
        after the range reading a skip from inside it would read the wrong tensor.

        Raises:
            RegionNotFoundError: blocks ``start`` to ``stop - 1`` hold one end of a skip only.
        """
        if self.skip_pairs is None:
            return
        for producer, consumer in self.skip_pairs(self.length):
            if start <= producer < stop and not start <= consumer < stop:
                raise RegionNotFoundError(
                    f"region {name!r} of {self.model_name} holds block {producer}, whose output block "
                    f"{consumer} reads through a long skip connection; a range must hold both or neither "
                    f"(e.g. end it at {self.length - start} or later, which keeps the first and last blocks paired)"
                )
