"""Timing candidates side by side: rounds interleave them so drift hits all alike.

On CUDA (``--device cuda``, :mod:`benchmarks.device`) each run is timed with CUDA events
whatever ``clock`` says; on a CPU with ``clock``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.device import current


def interleaved_times(
    candidates: dict[str, Callable[[], Any]],
    rounds: int = 7,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Every round's time in seconds of each candidate, running A, B, C, A, B, C, ...

    ``warmup`` rounds run first and are not timed. ``clock`` defaults to wall time;
    ``time.process_time`` (CPU time, one thread) is steadier on a machine others share. On
    CUDA, events time each run instead.
    """
    target = current()
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            times[name].append(target.seconds(run, clock))
    return times


def interleaved_medians(
    candidates: dict[str, Callable[[], Any]],
    rounds: int = 7,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median time in seconds of each candidate over interleaved rounds (:func:`interleaved_times`)."""
    times = interleaved_times(candidates, rounds, warmup, clock)
    return {name: statistics.median(values) for name, values in times.items()}
