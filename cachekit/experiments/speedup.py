"""A setting's speedup: paired, interleaved timings of one batch, their median and spread, and the noise check.

The runner times the first batch of a setting's seeds uncached (A) and cached (B) in turn,
``A B A B A B`` for three repeats, so that a change of load on a shared machine hits both
alike. Each round gives one ratio ``A / B``; the speedup is the median uncached loop over
the median cached loop, which lies between the smallest and the largest ratio (the
spread). Caching cannot make a loop faster than the share of FLOPs it still computes
allows (the ceiling ``1 / flops_share``): a speedup above it by more than the spread was
timed on a machine too busy to time, and is marked noisy.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

SPEED_COLUMNS = ("baseline_seconds", "speedup_min", "speedup_max", "noisy")
"""The row columns of a speedup besides ``loop_seconds`` and ``speedup``."""


@dataclass(frozen=True)
class Speedup:
    """Seconds of the uncached and the cached loop on the same batch, one pair per round."""

    baseline: tuple[float, ...]
    """Seconds of the uncached loop, each round."""
    cached: tuple[float, ...]
    """Seconds of the setting's loop, each round, right after that round's uncached loop."""

    def __post_init__(self) -> None:
        if not self.cached or len(self.baseline) != len(self.cached):
            raise ValueError(f"need one uncached and one cached time per round, got {self.baseline} and {self.cached}")

    @classmethod
    def uncached(cls, seconds: tuple[float, ...]) -> Speedup:
        """An uncached setting: its own loops are its baseline (speedup 1)."""
        return cls(seconds, seconds)

    @property
    def baseline_seconds(self) -> float:
        """Median seconds of the uncached loop."""
        return statistics.median(self.baseline)

    @property
    def loop_seconds(self) -> float:
        """Median seconds of the setting's loop."""
        return statistics.median(self.cached)

    @property
    def value(self) -> float:
        """``baseline_seconds / loop_seconds``."""
        return self.baseline_seconds / _positive(self.loop_seconds)

    @property
    def ratios(self) -> list[float]:
        """``A / B`` of each round."""
        return [a / _positive(b) for a, b in zip(self.baseline, self.cached, strict=True)]

    @property
    def spread(self) -> tuple[float, float]:
        """The smallest and the largest ratio of a round; :attr:`value` lies between them."""
        return min(self.ratios), max(self.ratios)

    def noisy(self, flops_share: float | None, margin: float) -> bool:
        """Whether the speedup beats the FLOP ceiling ``(1 + margin) / flops_share`` by more than its spread.

        ``margin`` allows for what FLOPs do not count (the per-call overhead of skipped
        modules); a setting whose FLOPs are not known is never noisy.
        """
        if not flops_share:
            return False
        low, high = self.spread
        return self.value > (1 + margin) / flops_share + (high - low)

    def columns(self, flops_share: float | None, margin: float) -> dict[str, Any]:
        """The result row's ``loop_seconds`` and ``speedup`` and the :data:`SPEED_COLUMNS`."""
        low, high = self.spread
        return {
            "loop_seconds": self.loop_seconds,
            "speedup": self.value,
            "baseline_seconds": self.baseline_seconds,
            "speedup_min": low,
            "speedup_max": high,
            "noisy": self.noisy(flops_share, margin),
        }


def _positive(seconds: float) -> float:
    return max(seconds, 1e-12)
