"""Families: models that share a block layout, recognised by class name or by shape.

A plugin describes each layout it maps once, as a :class:`Family`, and reads a model's
:class:`~cachekit.trunk.Trunk` from it. Classes are matched by name along the model's MRO
(:func:`cachekit.isinstance_str`), so the plugin never imports the library defining them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from cachekit import RegionIO, isinstance_str
from cachekit.trunk.blocks import BlockList, SkipPairs, Trunk


@dataclass(frozen=True)
class Family:
    """Models that share a block layout.

    Attributes:
        classes: class names, matched along the model's MRO (subclasses included).
        lists: the ``nn.ModuleList`` attributes holding the blocks, in execution order.
        io: how every block of those lists takes and returns its streams
            (see :mod:`cachekit.trunk.streams`).
        skip_pairs: long skip connections between blocks, if any.
        recognise: for models known by their shape rather than their class (a DiT written
            after a paper's code), a test a model of no listed class passes to belong here.
    """

    classes: tuple[str, ...]
    lists: tuple[str, ...]
    io: RegionIO
    skip_pairs: SkipPairs | None = None
    recognise: Callable[[nn.Module], bool] | None = None

    def matches(self, model: nn.Module) -> bool:
        """True when one of :attr:`classes` is in ``model``'s MRO, or ``model`` passes :attr:`recognise`."""
        if any(isinstance_str(model, name) for name in self.classes):
            return True
        return self.recognise is not None and self.recognise(model)

    def trunk(self, model: nn.Module) -> Trunk | None:
        """The trunk of ``model``; ``None`` when it is not of this family or has no blocks at all.

        Empty lists are left out (a Flux with no single-stream blocks has a trunk of one list).
        """
        if not self.matches(model):
            return None
        lists = tuple(BlockList(name, len(getattr(model, name)), self.io) for name in self.lists)
        lists = tuple(block_list for block_list in lists if block_list.length)
        return Trunk(type(model).__name__, lists, self.skip_pairs) if lists else None


def family_of(model: nn.Module, families: Iterable[Family]) -> Family | None:
    """The first of ``families`` that ``model`` belongs to, or ``None``."""
    return next((family for family in families if family.matches(model)), None)
