"""Speed figures that hold on a shared machine: interleaved rounds, medians with their spread,
the FLOP ceiling check, and one measurement behind ``loop_seconds`` and ``speedup``.

Timing is tested with a simulated clock, never with real time: every leaf module a forward
runs costs one second, multiplied by the machine's load while the uncached model samples
(a busy machine during the baseline: what inflated speedups in the field).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from cachekit.cli import main
from cachekit.engine.handle import handle_of
from cachekit.experiments import BASELINE, run_experiment
from cachekit.experiments import runner as runner_module
from cachekit.experiments.loop_timer import ClockTimer, loop_timer
from cachekit.experiments.plots import front_rows
from cachekit.experiments.speedup import Speedup
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

SWEEP = {
    "model": {"builder": "tiny-unet"},
    "sampling": {"steps": 6, "num_samples": 4, "batch_size": 2},
    "policies": [{"grid": {"interval": [2, 3]}, "branch": 0}],
}


class SimulatedMachine:
    """A clock (``machine()`` gives seconds) that advances one second, times ``load`` while no
    cache is enabled on the UNet, per leaf module forward; it logs which kind of loop read it."""

    def __init__(self, load: float = 1.0):
        self.load = load
        self.now = 0.0
        self.cached = False
        self.loops: list[str] = []
        self.threads: set[int] = set()

    def __call__(self) -> float:
        """Read inside timed loops only."""
        self.threads.add(torch.get_num_threads())
        kind = "cached" if self.cached else "uncached"
        if not self.loops or self.loops[-1] != kind:
            self.loops.append(kind)
        return self.now

    def _before(self, module: torch.nn.Module, args: object) -> None:
        if type(module).__name__ == "UNet2DModel":
            self.cached = handle_of(module) is not None

    def _after(self, module: torch.nn.Module, args: object, output: object) -> None:
        if next(module.children(), None) is None:
            self.now += 1.0 if self.cached else self.load

    def running(self) -> Iterator[SimulatedMachine]:
        hooks = [register_module_forward_pre_hook(self._before), register_module_forward_hook(self._after)]
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()


@pytest.fixture
def machine(request) -> Iterator[SimulatedMachine]:
    yield from SimulatedMachine(getattr(request, "param", 1.0)).running()


def test_loop_seconds_and_the_speedup_come_from_one_measurement(tmp_path, machine):
    rows = run_experiment(SWEEP, tmp_path, progress=False, clock=machine).rows
    baseline = rows[0]
    assert baseline["speedup"] == baseline["speedup_min"] == baseline["speedup_max"] == 1.0
    assert baseline["loop_seconds"] == baseline["baseline_seconds"] > 0
    for row in rows[1:]:
        assert row["speedup"] == pytest.approx(row["baseline_seconds"] / row["loop_seconds"])
        # a steady machine: the baseline row's loop is each setting's uncached loop, so the columns agree
        assert row["baseline_seconds"] == baseline["loop_seconds"]
        assert baseline["loop_seconds"] / row["loop_seconds"] == pytest.approx(row["speedup"])
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
        assert 1 < row["speedup"] <= 1.1 / row["flops_share"] and row["noisy"] is False


def test_rounds_interleave_uncached_and_cached_batches_on_fixed_threads(tmp_path, machine):
    config = {**SWEEP, "policies": [{"interval": 2, "branch": 0}], "timing": {"repeats": 3, "threads": 1}}
    torch.set_num_threads(2)  # the caller's count (the autouse fixture restores its own after the test)
    run_experiment(config, tmp_path, progress=False, clock=machine)
    # warm-up, the baseline and its repeats, then A (uncached), B (the samples), A B, A B
    assert machine.loops == ["uncached", "cached", "uncached", "cached", "uncached", "cached"]
    assert machine.threads == {1}
    assert torch.get_num_threads() == 2  # restored after the run


@pytest.mark.parametrize("machine", [4.0], indirect=True)
def test_a_machine_busy_during_the_baseline_is_flagged_and_kept_off_the_front(tmp_path, machine, capsys, monkeypatch):
    rows = run_experiment(SWEEP, tmp_path, progress=False, clock=machine).rows
    for row in rows[1:]:
        ceiling = 1 / row["flops_share"]
        assert row["speedup"] > 2 * ceiling and row["noisy"] is True
    assert rows[0]["noisy"] is False
    assert [row["setting"] for row in front_rows(rows, "fd", False)] == [BASELINE]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [row["noisy"] for row in saved["rows"]] == [False, True, True]

    monkeypatch.setattr(runner_module, "loop_timer", lambda device, threads, clock: ClockTimer(machine))
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(SWEEP))
    assert main(["run", str(path), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = {line.split("  ")[0]: line for line in printed[2:5]}
    assert "noisy" not in table[BASELINE] and all("noisy" in table[name] for name in list(table)[1:])
    notes = [line for line in printed if line.startswith("noisy timing:")]
    assert len(notes) == 1
    assert "'uniform interval=2 @branch0', 'uniform interval=3 @branch0'" in notes[0]
    assert "too busy" in notes[0] and "--fresh" in notes[0]


def test_the_table_shows_the_median_with_its_spread(tmp_path, machine):
    results = run_experiment(SWEEP, tmp_path, progress=False, clock=machine)
    headers, body = results.table()
    assert headers[:4] == ["setting", "speedup", "refreshes", "FLOPs"]
    assert body[0][1] == "1.00x"
    row = results.rows[1]
    assert body[1][1] == f"{row['speedup']:.2f}x ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
    assert results.noise_note() is None


def test_the_median_resists_one_loaded_round_and_its_spread_shows_it():
    steady = Speedup(baseline=(10.0, 10.0, 10.0), cached=(5.0, 5.0, 5.0))
    assert steady.value == 2.0 and steady.spread == (2.0, 2.0)
    spike = Speedup(baseline=(10.0, 40.0, 10.0), cached=(5.0, 5.0, 5.1))  # one uncached round under load
    assert spike.value == 2.0 and spike.spread == (10.0 / 5.1, 8.0)
    assert not spike.noisy(flops_share=0.5, margin=0.0)  # inside the spread: not flagged
    busy = Speedup(baseline=(40.0, 41.0, 40.0), cached=(5.0, 5.0, 5.0))  # every round under load
    assert busy.noisy(flops_share=0.5, margin=0.1) and not busy.noisy(flops_share=None, margin=0.1)
    overhead = Speedup(baseline=(10.5, 10.5, 10.5), cached=(5.0, 5.0, 5.0))  # 2.1x against a 2x ceiling
    assert not overhead.noisy(flops_share=0.5, margin=0.1) and overhead.noisy(flops_share=0.5, margin=0.0)
    assert Speedup.uncached((3.0, 2.0, 4.0)).columns(1.0, 0.1) == {
        "loop_seconds": 3.0,
        "speedup": 1.0,
        "baseline_seconds": 3.0,
        "speedup_min": 1.0,
        "speedup_max": 1.0,
        "noisy": False,
    }
    with pytest.raises(ValueError, match="one uncached and one cached time per round"):
        Speedup((1.0,), (1.0, 2.0))


def test_cpu_loops_are_timed_in_cpu_time():
    assert loop_timer("cpu", threads=1).clock is time.thread_time
    assert loop_timer("cpu", threads=4).clock is time.process_time
    assert loop_timer("cuda", threads=1, clock=time.monotonic).clock is time.monotonic
    timer = loop_timer("cpu", threads=1, clock=iter([1.0, 2.0, 5.0]).__next__)
    assert timer.lap() == 0.0
    timer.start()
    timer.stop()
    timer.stop()
    assert timer.lap() == 4.0 and timer.lap() == 0.0
