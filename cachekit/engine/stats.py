"""Statistics of what was refreshed or reused, per region, and the hit map."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

FEW_STEPS = 6
"""A generation of fewer denoising steps than this is *few-step* (distilled schedules: LCM,
Turbo, Lightning, schnell): cachekit warns with :class:`~cachekit.errors.FewStepsWarning`
and the stats carry its :class:`FewSteps` ceiling."""


@dataclass(frozen=True)
class FewSteps:
    """The ceiling on reuse in a generation of fewer than :data:`FEW_STEPS` steps.

    A region computes at the first step (nothing is stored yet), so it reuses on at most
    ``num_steps - 1`` steps of each context, and each reuse stands in for a long stretch of
    the schedule, where features change most: caching saves little compute at a visible cost.
    """

    num_steps: int

    @property
    def max_reuses(self) -> int:
        """Reuses per region and context at most: every step but the first."""
        return self.num_steps - 1

    @classmethod
    def of(cls, num_steps: int | None) -> FewSteps | None:
        """The ceiling of a generation of ``num_steps`` steps, or ``None`` when it is not few-step (or unknown)."""
        return cls(num_steps) if num_steps is not None and num_steps < FEW_STEPS else None

    def __str__(self) -> str:
        return f"{self.num_steps} steps: at most {self.max_reuses} reuses per region; caching saves little here"


@dataclass
class RegionStats:
    """Refresh and reuse counts of one region, and the hit map of its latest generation."""

    refreshes: int = 0
    reuses: int = 0
    hits: dict[int, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    """context -> step -> one character per call: ``R`` refreshed, ``r`` some rows refreshed, ``.`` reused."""
    rows: int = 0
    """Batch rows seen over every call."""
    computed_rows: int = 0
    """Batch rows the region computed (all rows of a refresh, the refreshed rows of a partial one)."""
    few_steps: FewSteps | None = None
    """The ceiling on reuse when the latest generation runs fewer than :data:`FEW_STEPS` steps, else ``None``."""
    held: dict[int, Counter[str]] = field(default_factory=dict)
    """context -> bytes kept after its latest refresh, by forecaster class (``TaylorForecast``,
    ``StoredResult`` for replayed outputs no live module reads); cleared at each generation."""
    peak_bytes: int = 0
    """The most bytes this region kept at once (every context together), over every generation."""

    def held_bytes(self) -> Counter[str]:
        """Bytes kept after the latest refreshes, by forecaster class, summed over contexts."""
        return sum(self.held.values(), Counter())

    def record_held(self, context: int, held: Counter[str]) -> None:
        """Note what context ``context`` keeps after a refresh (bytes by forecaster class)."""
        self.held[context] = held
        self.peak_bytes = max(self.peak_bytes, sum(self.held_bytes().values()))

    def record(self, step: int, context: int, computed: int, rows: int) -> None:
        """Count one call that computed ``computed`` of its ``rows`` batch rows.

        A call that computed any row counts as a refresh, one that computed none as a reuse.
        """
        if computed:
            self.refreshes += 1
        else:
            self.reuses += 1
        self.rows += rows
        self.computed_rows += computed
        mark = "." if not computed else "R" if computed == rows else "r"
        row = self.hits[context]
        row[step] = row.get(step, "") + mark

    def new_generation(self) -> None:
        """Start a fresh hit map and held bytes; totals keep counting."""
        self.hits = defaultdict(dict)
        self.held = {}

    @property
    def computed_share(self) -> float:
        """Share of batch rows the region computed over every call, in [0, 1] (1.0 before any call)."""
        return self.computed_rows / self.rows if self.rows else 1.0


class CacheStats:
    """Statistics of every region of a :class:`~cachekit.engine.handle.CacheHandle`, by region name."""

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

    @property
    def peak_bytes(self) -> int:
        """The most bytes kept at once, summed over regions (each region's own peak)."""
        return sum(stats.peak_bytes for stats in self.regions.values())

    @property
    def few_steps(self) -> FewSteps | None:
        """The ceiling on reuse when the latest generation of a region ran few steps, else ``None``."""
        return next((stats.few_steps for stats in self.regions.values() if stats.few_steps), None)

    def refresh_steps(self, name: str, context: int = 0) -> list[int]:
        """Steps of the latest generation at which ``name`` refreshed on its first call."""
        row = self.regions[name].hits.get(context, {})
        return [step for step, marks in sorted(row.items()) if marks[0] in "Rr"]

    def hit_map(self) -> str:
        """A printable map: one row per region and context, one column per step.

        ``R`` marks a refresh, ``r`` a refresh of some batch rows, ``.`` a reuse (first call of the
        step). A last line gives the :class:`FewSteps` ceiling of a few-step generation.
        """
        rows = []
        for name, stats in self.regions.items():
            for context, row in sorted(stats.hits.items()):
                steps = max(row, default=-1) + 1
                marks = "".join(row[step][0] if step in row else " " for step in range(steps))
                label = name if len(stats.hits) == 1 else f"{name}[{context}]"
                rows.append((label, f"{marks}  {stats.refreshes} refreshes, {stats.reuses} reuses"))
        width = max([24, *(len(label) for label, _ in rows)])  # steps line up under long names too
        lines = [f"{label:<{width}} {rest}" for label, rest in rows]
        return "\n".join(lines if self.few_steps is None else [*lines, str(self.few_steps)])

    def __repr__(self) -> str:
        return f"CacheStats(refreshes={self.refreshes}, reuses={self.reuses})\n{self.hit_map()}"
