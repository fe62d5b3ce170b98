"""Sweeps on Ray: a local two-CPU cluster started by the test gives the rows and samples of a local run,
one progress bar counts every pipeline call, a worker killed mid-setting has only that shard rerun, and
without Ray the flag is a clear error naming the extra.

The Ray run uses a runner whose replicas (what each worker measures with) note each model load and
each finished shard in a log, and kill their process, once, on the first pipeline call of a chosen shard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import cachekit.experiments.runner as runner_module
from cachekit import ConfigError
from cachekit.cli import main
from cachekit.experiments import BASELINE, ExperimentError, ExperimentRunner, load_experiment, run_experiment
from cachekit.experiments.executors import RAY_EXTRA, ProgressBar, RayExecutor
from cachekit.experiments.executors.ray_executor import _slots
from cachekit.experiments.measurement import Measurement
from cachekit.experiments.results import ResultFiles
from cachekit.experiments.shard import Shard
from tests.test_experiments_interrupt import untimed
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

SWEEP = {
    "model": {"builder": "tiny-unet"},
    "sampling": {"steps": 4, "num_samples": 4, "batch_size": 2},
    "policies": [{"interval": 2, "branch": 0}],
}
"""The baseline and one cached setting, two batches each: each setting makes two shards of one batch."""

SHARDS = [f"{name}#{index}" for name in (BASELINE, "uniform interval=2 @branch0") for index in (0, 1)]

DOOMED = SHARDS[2]
"""The shard whose worker dies: the first (timed) shard of the cached setting."""


class ObservedRunner(ExperimentRunner):
    """A runner whose replicas log model loads and finished shards, and die once in :data:`DOOMED`."""

    def __init__(self, *args: Any, log: Path, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log = log

    def replica(self) -> ObservedRunner:
        return ObservedRunner(self.config, self.output_dir, progress=False, clock=self.clock, log=self.log)

    def _note(self, line: str) -> None:
        with self.log.open("a", encoding="utf-8") as handle:  # one short append: whole lines from each process
            handle.write(f"{line}\n")

    def _load_pipeline(self) -> Any:
        self._note(f"load {os.getpid()}")
        return super()._load_pipeline()

    def measure(self, shard: Shard, bar: ProgressBar) -> Measurement:
        key = f"{shard.setting.name}#{shard.index}"
        measured = super().measure(shard, _DyingBar(bar, self.log.with_suffix(".died")) if key == DOOMED else bar)
        self._note(f"done {key}")
        return measured


class _DyingBar:
    """Kills its process at the first pipeline call, unless a process already died (``marker`` exists)."""

    def __init__(self, bar: ProgressBar, marker: Path):
        self.bar, self.marker = bar, marker

    def update(self, count: int) -> None:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        self.bar.update(count)

    def set_description(self, text: str) -> None:
        self.bar.set_description(text)


class CountingBar:
    """Records what the runner's one progress bar is told."""

    def __init__(self, total: int):
        self.total, self.count, self.bars = total, 0, 1

    def update(self, count: int) -> None:
        assert count > 0
        self.count += count

    def set_description(self, text: str) -> None:
        """Not checked."""


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The sweep in this process, with Ray hidden: a local run never imports it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "ray", None)
        return run_experiment(SWEEP, tmp_path_factory.mktemp("local"), progress=False)


@pytest.fixture(scope="module")
def on_ray(tmp_path_factory):
    """The sweep on a local Ray cluster of 2 CPUs, 2 workers, each setting in 2 shards; one worker dies."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    out = tmp_path_factory.mktemp("ray")
    bars: list[CountingBar] = []

    @contextmanager
    def counting_bar(total: int, enabled: bool) -> Iterator[CountingBar]:
        bars.append(CountingBar(total))
        yield bars[-1]

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner_module, "_progress_bar", counting_bar)
            runner = ObservedRunner(SWEEP, out, executor=RayExecutor(shards=2), log=out / "log.txt")
            results = runner.run()
    finally:
        ray.shutdown()
    return results, bars, (out / "log.txt").read_text(encoding="utf-8").splitlines(), out / "log.died"


@pytest.mark.slow
def test_a_sweep_on_ray_gives_the_rows_and_samples_of_a_local_run(on_ray, local):
    results, bars, _, _ = on_ray
    assert [row["setting"] for row in results.rows] == [row["setting"] for row in local.rows]
    assert untimed(results.rows) == untimed(local.rows)  # FD, fidelity, refreshes, FLOPs share
    assert results.rows[1]["fd"] == local.rows[1]["fd"] and results.rows[1]["psnr"] is not None
    ray_files, local_files = ResultFiles(results.output_dir), ResultFiles(local.output_dir)
    for row in results.rows:
        assert torch.equal(ray_files.load_samples(row["setting"]), local_files.load_samples(row["setting"]))
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"] and row["loop_seconds"] > 0
    assert (results.output_dir / "pareto.png").is_file() and (results.output_dir / "results.csv").is_file()
    [bar] = bars
    assert bar.count == bar.total


@pytest.mark.slow
def test_a_worker_killed_mid_setting_reruns_that_shard_only_and_each_worker_loads_once(on_ray):
    _, _, log, died = on_ray
    assert died.is_file(), "no worker died"
    done = [line.removeprefix("done ") for line in log if line.startswith("done ")]
    assert sorted(done) == sorted(SHARDS)  # every shard finished exactly once, the killed one included
    loads = [line.split()[1] for line in log if line.startswith("load ")]
    assert len(loads) == len(set(loads)) == 3  # two workers and the one restarted: one load each
    assert died.read_text() in loads


def test_without_ray_the_flag_names_the_extra_before_loading_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError

    def no_model(self):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ExperimentRunner, "_load_pipeline", no_model)
    with pytest.raises(ExperimentError, match="needs Ray") as error:
        run_experiment(SWEEP, tmp_path, progress=False, executor=RayExecutor())
    assert RAY_EXTRA in str(error.value) and RAY_EXTRA == 'pip install "cachekit[ray]"'
    config = tmp_path / "sweep.json"
    config.write_text(__import__("json").dumps(SWEEP))
    assert main(["run", str(config), "--out", str(tmp_path), "--quiet", "--executor", "ray"]) == 2
    assert capsys.readouterr().err == (
        f"cachekit run: error: the Ray executor (--executor ray) needs Ray, which is not installed: {RAY_EXTRA}\n"
    )
    assert main(["run", str(config), "--quiet", "--address", "auto"]) == 2
    assert "--address 'auto' is the Ray cluster to join: give it with --executor ray" in capsys.readouterr().err


def test_bad_executor_settings_and_a_cluster_no_worker_fits_on_are_clear_errors():
    with pytest.raises(ConfigError, match=r"RayExecutor workers=0, retries=-1: workers and shards are at least 1"):
        RayExecutor(workers=0, retries=-1)
    four_threads = load_experiment({**SWEEP, "timing": {"threads": 4}})
    assert _slots({"CPU": 8.0}, four_threads, gpus=0) == 2
    with pytest.raises(ExperimentError, match=r"no worker fits .* takes 4 CPUs \(timing.threads\); the cluster has"):
        _slots({"CPU": 2.0}, four_threads, gpus=0)
    with pytest.raises(ExperimentError, match=r"takes a GPU \(model.device is cuda\)"):
        _slots({"CPU": 2.0}, four_threads, gpus=1)


class EvalRunner(ExperimentRunner):
    """Samples the tiny DiT in eval mode: built, it is in training mode, where its class-label
    dropout draws from the global RNG and no two calls on the same seeds agree."""

    def _load_pipeline(self) -> Any:
        model = super()._load_pipeline()
        model.pipeline.transformer.eval()
        return model


def test_a_setting_measured_in_shards_merges_into_the_measurement_of_the_whole(tmp_path):
    """Sharding is exact, with no cluster: shards measured one by one merge into what one whole
    measurement gives; class labels follow each sample's index in the setting, not in its shard."""
    config = {
        "model": {"builder": "tiny-dit"},
        "sampling": {"steps": 4, "num_samples": 5, "batch_size": 2, "class_labels": [3, 7, 1]},
        "policies": [{"interval": 2, "regions": "blocks[1:2]"}],
    }
    runner = EvalRunner(config, tmp_path, progress=False)
    [setting] = runner.config.settings
    runner.prepare([setting])
    whole = runner.whole(setting)
    shards = whole.split(batch_size=2, parts=2)
    assert [(shard.index, shard.start, shard.seeds) for shard in shards] == [(0, 0, (0, 1, 2, 3)), (1, 4, (4,))]
    assert whole.split(batch_size=2, parts=9) == [*whole.split(2, 3)] and len(whole.split(2, 9)) == 3
    bars = [CountingBar(shard.work(2, 3)) for shard in [whole, *shards]]
    expected = runner.measure(whole, bars[0])
    merged = Measurement.merge([runner.measure(shard, bar) for shard, bar in zip(shards, bars[1:], strict=True)])
    assert all(bar.count == bar.total for bar in bars) and bars[0].total == bars[1].total + bars[2].total
    assert torch.equal(merged.images, expected.images)
    assert (merged.generations, merged.calls, merged.refreshes, merged.region_calls) == (
        expected.generations,
        expected.calls,
        expected.refreshes,
        expected.region_calls,
    )
    assert merged.regions == expected.regions and merged.flops_share() == expected.flops_share() < 1
    assert merged.speedup is not None and len(merged.speedup.cached) == 3
