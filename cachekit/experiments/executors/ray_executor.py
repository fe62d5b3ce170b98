"""The Ray executor: a sweep's settings, split into shards, measured by workers on a Ray cluster.

Each worker is a Ray actor holding a replica of the runner (:mod:`~cachekit.experiments.executors.ray_worker`):
it loads the model once and measures one shard at a time. A setting's first shard also
times it, so a setting's interleaved timing rounds all run in one worker's process. The
driver hands each worker its next shard as the last one returns, merges the shards of a
setting and yields it to the runner, which writes rows, files and plots as a local run does.

A worker whose process dies is restarted by Ray (``max_restarts``) and the shard it was
measuring is run again (``max_task_retries``); a shard whose result reached the driver is
never submitted again. Ray is imported only when :meth:`RayExecutor.run` runs.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cachekit.errors import CachekitError, ConfigError
from cachekit.experiments.config import ExperimentConfig
from cachekit.experiments.entries import Setting
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.executors.executor import Measurer, ProgressBar
from cachekit.experiments.executors.ray_progress import ProgressCounter, RemoteBar
from cachekit.experiments.executors.ray_worker import SweepWorker
from cachekit.experiments.measurement import Measurement
from cachekit.experiments.shard import Shard

RAY_EXTRA = 'pip install "cachekit[ray]"'
"""The install line that brings Ray, named by the error when it is missing."""

POLL_SECONDS = 0.5
"""How often the driver refreshes the progress bar while it waits for shards."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or an :class:`~cachekit.experiments.errors.ExperimentError` naming the extra."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ExperimentError(
            f"the Ray executor (--executor ray) needs Ray, which is not installed: {RAY_EXTRA}"
        ) from None


@dataclass(frozen=True)
class RayExecutor:
    """Measures settings on a Ray cluster (see the module docs for what runs where and what is retried)."""

    address: str | None = None
    """The cluster to join (``ray.init(address=...)``); ``None``: the one this process already joined, else a
    local one started for the run and shut down after it."""
    workers: int | None = None
    """Worker actors, at most as many as the cluster holds at once (its CPUs over ``timing.threads``, or its
    GPUs on ``cuda``); default: that many."""
    shards: int | None = None
    """Shards each setting is split into at most, on batch boundaries (default: one per worker)."""
    retries: int = 3
    """Times a worker may die and be restarted; the shard it was measuring is run again each time."""

    def __post_init__(self) -> None:
        bad = {
            name: value for name in ("workers", "shards") if (value := getattr(self, name)) is not None and value < 1
        }
        if self.retries < 0:
            bad["retries"] = self.retries
        if bad:
            given = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise ConfigError(f"RayExecutor {given}: workers and shards are at least 1 (or None), retries at least 0")

    def run(
        self, measurer: Measurer, settings: list[Setting], bar: ProgressBar
    ) -> Iterator[tuple[Setting, Measurement]]:
        """Start the workers, measure every setting's shards on them, yield each setting when its shards are in."""
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address)
            except ConnectionError as error:
                raise ExperimentError(f"cannot join the Ray cluster at {self.address!r}: {error}") from None
        try:
            yield from _Sweep(ray, self, measurer, settings, bar).run()
        finally:
            if started:
                ray.shutdown()


class _Sweep:
    """One run of a :class:`RayExecutor`: its workers, the shards left, those in flight and those in."""

    def __init__(
        self, ray: ModuleType, executor: RayExecutor, measurer: Measurer, settings: list[Setting], bar: ProgressBar
    ):
        self.ray, self.bar = ray, bar
        config = measurer.config
        self.batch_size, self.repeats = config.sampling.batch_size, config.timing.repeats
        gpus = 1 if config.model.device.startswith("cuda") else 0
        slots = _slots(ray.cluster_resources(), config, gpus)
        workers = min(
            executor.workers or slots, slots
        )  # a worker the cluster cannot place would hold its shard forever
        parts = executor.shards or workers
        self.queue = deque(
            shard for setting in settings for shard in measurer.whole(setting).split(self.batch_size, parts)
        )
        self.expected = {setting.name: 0 for setting in settings}
        for shard in self.queue:
            self.expected[shard.setting.name] += 1
        self.counter = ray.remote(ProgressCounter).options(num_cpus=0).remote()
        worker = ray.remote(SweepWorker).options(
            num_cpus=config.timing.threads,
            num_gpus=gpus,
            max_restarts=executor.retries,
            max_task_retries=executor.retries,
        )
        replica = measurer.replica()
        self.workers = [worker.remote(replica, settings) for _ in range(min(workers, len(self.queue)))]
        self.retries = executor.retries
        self.pending: dict[Any, tuple[Shard, Any]] = {}
        self.parts: dict[str, dict[int, Measurement]] = {}
        self.credited = 0
        """Pipeline calls of the shards whose results are in."""
        self.shown = 0

    def run(self) -> Iterator[tuple[Setting, Measurement]]:
        for worker in self.workers:
            self._submit(worker)
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                shard, worker = self.pending.pop(ref)
                measured = self._result(ref, shard)
                self._submit(worker)
                self.credited += shard.work(self.batch_size, self.repeats)
                done = self.parts.setdefault(shard.setting.name, {})
                done[shard.index] = measured
                if len(done) == self.expected[shard.setting.name]:
                    self.bar.set_description(shard.setting.name)
                    yield shard.setting, Measurement.merge([done[index] for index in sorted(done)])
            self._show()

    def _submit(self, worker: Any) -> None:
        if self.queue:
            shard = self.queue.popleft()
            self.pending[worker.measure.remote(shard, RemoteBar(self.counter, _key(shard)))] = (shard, worker)

    def _result(self, ref: Any, shard: Shard) -> Measurement:
        """The shard's measurement; a worker's cachekit error raised as itself, a worker dead too often
        as an :class:`~cachekit.experiments.errors.ExperimentError`."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, CachekitError):
                raise error.cause from None
            raise
        except self.ray.exceptions.RayActorError as error:
            raise ExperimentError(
                f"the Ray worker measuring setting {shard.setting.name!r} (shard {shard.index}) died and was not "
                f"restarted ({self.retries} restarts allowed): {error}; "
                "the settings done are saved, run again to continue"
            ) from None

    def _show(self) -> None:
        """Advance the bar to the calls of the shards in, plus those reported by the shards in flight."""
        counts = self.ray.get(self.counter.counts.remote())
        running = sum(
            min(counts.get(_key(shard), 0), shard.work(self.batch_size, self.repeats))
            for shard, _ in self.pending.values()
        )
        total = self.credited + running
        if total > self.shown:
            self.bar.update(total - self.shown)
            self.shown = total


def _slots(resources: dict[str, float], config: ExperimentConfig, gpus: int) -> int:
    """Workers the cluster holds at once: its GPUs on CUDA, else its CPUs over ``timing.threads``."""
    threads = config.timing.threads
    slots = int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 0) // threads)
    if slots < 1:
        wants = "a GPU (model.device is cuda)" if gpus else f"{threads} CPUs (timing.threads)"
        raise ExperimentError(f"no worker fits on the Ray cluster: a worker takes {wants}; the cluster has {resources}")
    return slots


def _key(shard: Shard) -> str:
    return f"{shard.setting.name}#{shard.index}"
