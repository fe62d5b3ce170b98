"""Per-sample decisions cost nothing measurable when every row agrees.

A 24-block transformer, batch 4 of one repeated sample (so the rows always agree), a
similarity policy: the per-row probe (one drift per row, one decision per row) against a
probe that measures the batch as one row (what a per-batch decision costs), on the same
refresh steps. Run: ``pytest benchmarks/test_batch_rows.py --benchmark-enable -s`` (``--device
cuda``: on a GPU, timed by CUDA events); the ratio of the medians (CPU time, one thread,
interleaved rounds) and its spread are printed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import torch

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_times
from benchmarks.test_hook_overhead import Transformer, generate
from cachekit.engine.probes import PROBES

REGION = [{"name": "middle", "entry": "blocks.1", "exit": "blocks.22"}]


class BatchAsOneRow:
    """The entry input averaged over the batch: one drift for all rows (a per-batch decision)."""

    def watched_modules(self, region: cachekit.Region) -> tuple[str, ...]:
        return ()

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return entry_inputs[0].mean(dim=0, keepdim=True)


def test_rows_that_agree_cost_what_a_per_batch_decision_costs(benchmark) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with PROBES.scoped():
            cachekit.register_probe("batch-as-one-row", BatchAsOneRow())
            torch.manual_seed(0)
            per_row, per_batch = current().model(Transformer().eval()), current().model(Transformer().eval())
            per_batch.load_state_dict(per_row.state_dict())
            sample = current().inputs(torch.randn(1, 128, 4).repeat(4, 1, 1))
            policy = {"kind": "similarity", "threshold": 0.3}
            rows = cachekit.enable(per_row, {"policy": policy, "declare": REGION})
            batch = cachekit.enable(per_batch, {"policy": {**policy, "probe": "batch-as-one-row"}, "declare": REGION})
            with rows, batch:
                times = interleaved_times(
                    {"per row": lambda: generate(per_row, sample), "per batch": lambda: generate(per_batch, sample)},
                    rounds=7,
                    clock=time.process_time,
                )
                benchmark.pedantic(generate, args=(per_row, sample), rounds=1, iterations=1)
                assert rows.stats.hit_map().split()[1] == batch.stats.hit_map().split()[1]  # the same decisions
                assert "r" not in rows.stats.hit_map().split()[1]
    finally:
        torch.set_num_threads(threads)
    ratios = [a / b for a, b in zip(times["per row"], times["per batch"], strict=True)]
    ratio = statistics.median(times["per row"]) / statistics.median(times["per batch"])
    benchmark.extra_info.update(ratio=ratio, spread=(min(ratios), max(ratios)))
    print(f"\nper-row / per-batch decisions, rows agreeing: {ratio:.4f} (rounds {min(ratios):.4f}-{max(ratios):.4f})")
