"""What agreeing over ranks costs: the all-reduce of drift terms, alone and in a generation.

Run: ``pytest benchmarks/test_distributed_reduce.py --benchmark-enable -s``. Two gloo CPU
ranks (tests/ranks.py) time, in wall time (a collective's cost is waiting, which CPU time
does not see):

- one all-reduce of the ``2 x batch`` float32 drift terms a region sums per call, batch 1, 2
  and 8 (median over repeats of 200 calls, with the spread);
- a 50-step generation of the sequence-sharded toy denoiser with a similarity policy that
  always refreshes (so both settings compute the same), ``process_group: none`` against
  ``world``, interleaved rounds: the difference is the reduction's cost in a real loop.

Figures go to the benchmark's ``extra_info`` and the terminal. The ranks are gloo CPU
processes: with ``--device cuda`` the benchmark skips (NCCL over GPUs is not measured here).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import torch
import torch.distributed as dist

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_times
from tests.ranks import drifting_inputs, mixer, run_ranks, shard

STEPS = 50
BATCHES = (1, 2, 8)
CALLS, REPEATS = 200, 7


def all_reduce_seconds(batch: int) -> list[float]:
    """Seconds per all-reduce of a ``(2, batch)`` float32 tensor, one figure per repeat."""
    terms = torch.ones(2, batch)
    for _ in range(20):
        dist.all_reduce(terms)
    figures = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(CALLS):
            dist.all_reduce(terms)
        figures.append((time.perf_counter() - start) / CALLS)
    return figures


def generation(model: torch.nn.Module, samples: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for step, sample in enumerate(samples):
            model(sample, torch.tensor(1000.0 * (1 - step / STEPS)))


def measure(rank: int, world: int) -> dict[str, Any]:
    reduce = {batch: all_reduce_seconds(batch) for batch in BATCHES}
    samples = [shard(sample, rank, world) for sample in drifting_inputs(STEPS)]
    config = {
        "policy": {"kind": "similarity", "threshold": 1e-9},  # always refresh: the same compute either way
        "declare": [{"name": "tail", "entry": "blocks.1", "exit": "blocks.3"}],
        "num_steps": STEPS,
    }
    alone, agreed = mixer(sharded=True), mixer(sharded=True)
    with (
        cachekit.cached(alone, {**config, "process_group": "none"}),
        cachekit.cached(agreed, {**config, "process_group": "world"}),
    ):
        times = interleaved_times(
            {"none": lambda: generation(alone, samples), "world": lambda: generation(agreed, samples)}, rounds=7
        )
    return {"reduce": reduce, "times": times}


def test_reducing_drift_terms_costs_one_small_all_reduce_per_region_and_step(benchmark) -> None:
    if current().is_cuda:
        pytest.skip("the ranks are gloo CPU processes; NCCL over GPUs is not measured here")
    results = run_ranks(measure, timeout=600)
    ranks = benchmark.pedantic(lambda: results, rounds=1, iterations=1)
    reduce = {batch: statistics.median(ranks[0]["reduce"][batch]) for batch in BATCHES}
    spread = {batch: (min(ranks[0]["reduce"][batch]), max(ranks[0]["reduce"][batch])) for batch in BATCHES}
    medians = {name: statistics.median(values) for name, values in ranks[0]["times"].items()}
    per_step = (medians["world"] - medians["none"]) / STEPS
    benchmark.extra_info.update(
        all_reduce_s={str(batch): value for batch, value in reduce.items()},
        generation_s=medians,
        added_per_step_s=per_step,
    )
    print("\nall-reduce of 2 x batch float32 drift terms, 2 gloo CPU ranks (median, min-max over repeats):")
    for batch in BATCHES:
        low, high = spread[batch]
        print(f"  batch {batch}: {1e6 * reduce[batch]:.1f} us ({1e6 * low:.1f}-{1e6 * high:.1f})")
    print(
        f"{STEPS}-step generation, one region: none {medians['none']:.3f}s, world {medians['world']:.3f}s, "
        f"{1e6 * per_step:+.1f} us per step ({100 * (medians['world'] / medians['none'] - 1):+.1f}%)"
    )
