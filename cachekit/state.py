"""Per-context cache state and the statistics of what was refreshed or reused."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from cachekit.policies.base import RegionMemory


@dataclass
class ContextState:
    """What one region stores for one context (a CFG branch run as its own call).

    Attributes:
        memory: what the policy reads (last refresh, reuses in a row, accumulated drift).
        outputs: stored module outputs by module path (``output`` mode, ``replay`` inners).
        residual: stored ``exit - entry`` tensors (``residual`` mode).
        previous_probe: the probe of the previous call, for the drift of the next.
        previous_refresh_step, previous_outputs, previous_residual: the step of the refresh
            before the latest and what it stored (kept only when reuse steps forecast).
    """

    memory: RegionMemory = field(default_factory=RegionMemory)
    outputs: dict[str, Any] = field(default_factory=dict)
    residual: tuple[torch.Tensor, ...] = ()
    previous_probe: torch.Tensor | None = None
    previous_refresh_step: int | None = None
    previous_outputs: dict[str, Any] = field(default_factory=dict)
    previous_residual: tuple[torch.Tensor, ...] = ()


class RegionState:
    """All contexts' state of one region; :meth:`reset` drops every cache at once."""

    def __init__(self) -> None:
        self.contexts: dict[int, ContextState] = {}

    def context(self, index: int) -> ContextState:
        """The state of context ``index``, created empty on first use."""
        state = self.contexts.get(index)
        if state is None:
            state = self.contexts[index] = ContextState()
        return state

    def reset(self) -> None:
        """Forget everything stored: the next call of every context refreshes."""
        self.contexts.clear()


@dataclass
class RegionStats:
    """Refresh and reuse counts of one region, and the hit map of its latest generation."""

    refreshes: int = 0
    reuses: int = 0
    hits: dict[int, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    """context -> step -> one character per call: ``R`` refreshed, ``.`` reused."""

    def record(self, step: int, context: int, refreshed: bool) -> None:
        """Count one decision."""
        if refreshed:
            self.refreshes += 1
        else:
            self.reuses += 1
        row = self.hits[context]
        row[step] = row.get(step, "") + ("R" if refreshed else ".")

    def new_generation(self) -> None:
        """Start a fresh hit map; totals keep counting."""
        self.hits = defaultdict(dict)

    @property
    def computed_share(self) -> float:
        """Share of calls that ran the region, in [0, 1] (1.0 before any call)."""
        total = self.refreshes + self.reuses
        return self.refreshes / total if total else 1.0


class CacheStats:
    """Statistics of every region of a :class:`~cachekit.engine.CacheHandle`, by region name."""

    def __init__(self, names: list[str]) -> None:
        self.regions: dict[str, RegionStats] = {name: RegionStats() for name in names}

    def __getitem__(self, name: str) -> RegionStats:
        return self.regions[name]

    @property
    def refreshes(self) -> int:
        """Refreshes summed over regions."""
        return sum(stats.refreshes for stats in self.regions.values())

    @property
    def reuses(self) -> int:
        """Reuses summed over regions."""
        return sum(stats.reuses for stats in self.regions.values())

    def refresh_steps(self, name: str, context: int = 0) -> list[int]:
        """Steps of the latest generation at which ``name`` refreshed on its first call."""
        row = self.regions[name].hits.get(context, {})
        return [step for step, marks in sorted(row.items()) if marks[0] == "R"]

    def hit_map(self) -> str:
        """A printable map: one row per region and context, one column per step.

        ``R`` marks a refresh, ``.`` a reuse (first call of the step).
        """
        rows = []
        for name, stats in self.regions.items():
            for context, row in sorted(stats.hits.items()):
                steps = max(row, default=-1) + 1
                marks = "".join(row[step][0] if step in row else " " for step in range(steps))
                label = name if len(stats.hits) == 1 else f"{name}[{context}]"
                rows.append((label, f"{marks}  {stats.refreshes} refreshes, {stats.reuses} reuses"))
        width = max([24, *(len(label) for label, _ in rows)])  # steps line up under long names too
        return "\n".join(f"{label:<{width}} {rest}" for label, rest in rows)

    def __repr__(self) -> str:
        return f"CacheStats(refreshes={self.refreshes}, reuses={self.reuses})\n{self.hit_map()}"
