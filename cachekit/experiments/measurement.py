"""What sampling one shard of a setting measured, as plain data a worker can send back, and its merge.

A :class:`Measurement` holds the samples and the counts a result row is made of (denoiser
calls, region refreshes, rows computed per region), with the speedup and the FLOP shares
of the shard that timed the setting. Counts add up over shards, so the merged measurement
of a setting split over workers gives the row a local run gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from cachekit.experiments.speedup import Speedup
from cachekit.flops import RegionFlops, computed_flop_share


@dataclass(frozen=True)
class RegionCount:
    """Batch rows one cached region saw and computed, over every call of a shard."""

    denoiser: str
    region: str
    computed_rows: int
    rows: int

    @property
    def computed_share(self) -> float:
        """Share of rows computed, in [0, 1] (1.0 before any call)."""
        return self.computed_rows / self.rows if self.rows else 1.0


@dataclass
class Measurement:
    """The samples of (a shard of) one setting and what was counted while sampling them."""

    images: torch.Tensor
    generations: int
    """Pipeline calls made to sample :attr:`images` (timing rounds not counted)."""
    calls: dict[str, int]
    """Calls of each denoiser."""
    refreshes: int
    """Region refreshes summed over regions (uncached: the denoiser calls, each a full compute)."""
    region_calls: int
    """Region calls summed over regions (uncached: the denoiser calls)."""
    regions: dict[str, RegionCount] = field(default_factory=dict)
    """The cached regions by their name in the handle's views (none when uncached)."""
    speedup: Speedup | None = None
    """The setting's timing, from the shard that timed it."""
    flops: dict[str, RegionFlops] = field(default_factory=dict)
    """Each called denoiser's region FLOP shares, from the shard that timed the setting."""

    @classmethod
    def merge(cls, parts: list[Measurement]) -> Measurement:
        """One measurement of a whole setting from its shards' (given in shard order)."""
        if len(parts) == 1:
            return parts[0]
        timed = next((part for part in parts if part.speedup is not None), parts[0])
        regions = {
            name: RegionCount(
                count.denoiser,
                count.region,
                sum(part.regions[name].computed_rows for part in parts),
                sum(part.regions[name].rows for part in parts),
            )
            for name, count in parts[0].regions.items()
        }
        return cls(
            images=torch.cat([part.images for part in parts]),
            generations=sum(part.generations for part in parts),
            calls=dict(sum((Counter(part.calls) for part in parts), Counter())),
            refreshes=sum(part.refreshes for part in parts),
            region_calls=sum(part.region_calls for part in parts),
            regions=regions,
            speedup=timed.speedup,
            flops=timed.flops,
        )

    def per_generation(self, count: int) -> float:
        """``count`` per pipeline call (a generation of one batch)."""
        return count / max(self.generations, 1)

    def flops_share(self) -> float | None:
        """Share of the uncached denoiser FLOPs computed, each denoiser weighted by its calls (1.0 uncached)."""
        if not self.regions:
            return 1.0
        computed = total = 0.0
        for name, flops in self.flops.items():
            local = {count.region: count.computed_share for count in self.regions.values() if count.denoiser == name}
            calls = self.calls.get(name, 0)
            computed += flops.forward * calls * computed_flop_share(flops, local)
            total += flops.forward * calls
        return computed / total if total else None
