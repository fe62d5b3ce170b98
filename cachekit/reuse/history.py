"""The results of a region's last refreshes, kept per batch row, and their weighted sum.

A :class:`RefreshHistory` keeps up to ``size`` results, latest first, and the step of each,
one row of steps per batch row when rows refreshed at different steps (per-sample
decisions), else one row shared by all. Serving combines the kept results with one weight
each (:mod:`cachekit.reuse.newton` computes them from the steps); two results are combined
with ``torch.lerp``, as ``forecast: linear`` always did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from cachekit.reuse.tree import merge_rows, nbytes, tensors, tree_map

Weigh = Callable[[torch.Tensor], torch.Tensor]
"""Weights ``(rows, n)`` of the ``n`` kept results from their steps ``(rows, n)``."""


class RefreshHistory:
    """The last ``size`` refresh results of one stored value, with their steps, per batch row."""

    def __init__(self, size: int):
        self.size = size
        self.results: list[Any] = []
        """Latest first: ``results[i]`` holds, for every row, that row's ``i``-th latest result."""
        self.nodes = torch.full((1, size), math.nan, dtype=torch.float64)
        """Refresh steps, latest first, NaN where a row has none: one row for all, or one per batch row."""

    def record(self, step: int, value: Any, rows: torch.Tensor | None) -> None:
        """Add ``value``, computed at ``step`` for the ``rows`` that refreshed (all when ``None``).

        A second refresh at the same step (a second call of one step) replaces the first.
        """
        shared = self.nodes.shape[0] == 1
        if rows is None and shared:
            if self.results and self.nodes[0, 0] == step:
                self.results[0] = value
            else:
                self.results = [value, *self.results][: self.size]
                self.nodes = torch.cat([torch.full((1, 1), float(step), dtype=torch.float64), self.nodes[:, :-1]], 1)
            return
        if rows is None:
            rows = torch.ones(self.nodes.shape[0], dtype=torch.bool)
        nodes = self.nodes.expand(len(rows), self.size) if shared else self.nodes
        moves = rows & (nodes[:, 0] != step)  # rows whose older results shift down one place
        kept = self.results or [value]  # the first record of some rows: the others get placeholders
        results = [merge_rows(rows, value, kept[0])]
        for index in range(1, min(len(self.results) + 1, self.size)):
            older = kept[index] if index < len(kept) else kept[index - 1]
            results.append(merge_rows(moves, kept[index - 1], older))
        self.results = results
        shifted = torch.cat([torch.full((len(rows), 1), float(step), dtype=torch.float64), nodes[:, :-1]], 1)
        merged = torch.where(moves[:, None], shifted, nodes)  # rows refreshed again at their latest step keep theirs
        same = (merged == merged[:1]) | (merged.isnan() & merged[:1].isnan())
        self.nodes = merged[:1].clone() if bool(same.all()) else merged

    def combine(self, weigh: Weigh) -> Any:
        """The kept results summed with the weights ``weigh`` gives their steps (every row its own)."""
        if len(self.results) < 2:
            return self.results[0] if self.results else None
        nodes = self.nodes[:, : len(self.results)]
        given = weigh(nodes)
        per_row = given.shape[0] > 1
        scale: list[float] | torch.Tensor = given if per_row else given[0].tolist()
        older = [tensors(result) for result in self.results[1:]]
        count = len(tensors(self.results[0]))
        if any(len(leaves) != count for leaves in older):
            return self.results[0]  # the results changed structure: nothing to combine
        combined = iter(
            _weighted([latest, *(leaves[i] for leaves in older)], scale)
            for i, latest in enumerate(tensors(self.results[0]))
        )
        return tree_map(lambda leaf, _: next(combined), self.results[0], None)

    def nbytes(self) -> int:
        """Bytes of the kept results."""
        return nbytes(*self.results)


def _weighted(leaves: list[torch.Tensor], scale: list[float] | torch.Tensor) -> torch.Tensor:
    """``sum_i scale[i] * leaves[i]``; the latest leaf alone where they cannot be combined."""
    latest = leaves[0]
    if not latest.is_floating_point() or any(leaf.shape != latest.shape for leaf in leaves):
        return latest
    if isinstance(scale, list):
        if len(leaves) == 2:
            return torch.lerp(leaves[1], latest, scale[0])
        out = torch.mul(latest, scale[0])
        for leaf, weight in zip(leaves[1:], scale[1:], strict=True):
            out.add_(leaf, alpha=weight)
        return out
    if latest.dim() == 0 or latest.shape[0] != scale.shape[0]:
        return latest  # no batch rows to weigh one by one
    shape = (-1, *([1] * (latest.dim() - 1)))
    columns = scale.to(device=latest.device, dtype=latest.dtype).unbind(1)
    out = latest * columns[0].view(shape)
    for leaf, weight in zip(leaves[1:], columns[1:], strict=True):
        out.addcmul_(leaf, weight.view(shape))
    return out
