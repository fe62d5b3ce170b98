"""Runs an :class:`~cachekit.experiments.config.ExperimentConfig`: the baseline, then each setting.

Every setting samples the same seeds as the uncached baseline. Every name a setting's
cache config gives (regions, denoisers, per-region and per-denoiser policies) is resolved
against the loaded model before anything samples. Per setting the runner records the time
of the denoising loop (first denoiser call to last, per pipeline call) and the speedup over
the uncached loop on the same batch, timed in interleaved rounds
(:mod:`cachekit.experiments.speedup`, on the clock of :mod:`cachekit.experiments.loop_timer`),
the refreshes per generation, the share of the denoiser FLOPs still computed, the fidelity
to the baseline (PSNR, relative L1, SSIM) and whatever the model's scorer measures (a
Fréchet distance and class accuracy on the shipped digits models). It writes
``results.csv``, ``results.json``, one PNG grid of samples per setting and ``pareto.png``
(speedup against fidelity, the Pareto front marked), each atomically.

Results are saved after each setting; rerunning the same config skips the settings already
done (same model, sampling, timing and cache config) and reuses the saved baseline samples,
so a run stopped at any point continues where it stopped.
Where the settings sample is the executor's (:mod:`cachekit.experiments.executors`): in this
process by default, or on a Ray cluster; rows, files and plots are made here either way.
Loading, calling and scoring the model come from plugins (the hooks of
``cachekit.experiments.hookspecs``, described on the Plugin hooks page); this module never
imports diffusers, and reads a cached run through the handle's public ``views`` and
``stats`` only.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from cachekit.api import enable
from cachekit.config import CacheConfig
from cachekit.denoiser import Denoiser
from cachekit.engine.handle import CacheHandle
from cachekit.errors import CachekitError, ConfigError, listing
from cachekit.experiments.atomic_file import remove_partials
from cachekit.experiments.calibration import default_output, seed_range
from cachekit.experiments.caller import PipelineCaller, SampleRequest
from cachekit.experiments.config import BASELINE, NOISE_FLOOR, ExperimentConfig, load_experiment, needs_tuning
from cachekit.experiments.entries import Setting
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.executors import Executor, LocalExecutor, ProgressBar
from cachekit.experiments.hooks import experiment_plugins, load_model
from cachekit.experiments.loop_timer import loop_timer
from cachekit.experiments.measurement import Measurement, RegionCount
from cachekit.experiments.metrics import FIDELITY_METRICS, fidelity
from cachekit.experiments.plots import save_grid, save_pareto
from cachekit.experiments.recorder import LoopRecorder, SettingRun
from cachekit.experiments.results import ExperimentResults, ResultFiles, digest, metric_columns
from cachekit.experiments.scorer import SampleScorer
from cachekit.experiments.shard import Shard
from cachekit.experiments.speedup import Speedup
from cachekit.flops import RegionFlops, region_flop_shares
from cachekit.policies.calibrated import CalibratedPolicy
from cachekit.region import Region

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedModel:
    """The pipeline an experiment samples from, how to call it, and its denoisers by name."""

    pipeline: Any
    caller: PipelineCaller
    denoisers: dict[str, nn.Module]


@dataclass(frozen=True)
class RunPlan:
    """The settings of a run, baseline first, and the saved rows of those already done."""

    settings: list[Setting]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Rows saved by an earlier run of the same config, by setting name: these are skipped."""

    @property
    def todo(self) -> list[Setting]:
        """The settings to run, in order."""
        return [setting for setting in self.settings if setting.name not in self.done]


class ExperimentRunner:
    """Runs one experiment into ``output_dir``; see the module docs for what is measured.

    ``clock`` (a function returning seconds) replaces the clock of
    :func:`~cachekit.experiments.loop_timer.loop_timer`, e.g. a test's simulated one.
    ``executor`` runs the settings (default: :class:`~cachekit.experiments.executors.LocalExecutor`,
    in this process); it calls :meth:`prepare` and :meth:`measure`, here or on a worker's copy.
    """

    def __init__(
        self,
        config: ExperimentConfig | Mapping[str, Any] | str | Path,
        output_dir: str | Path | None = None,
        fresh: bool = False,
        progress: bool = True,
        clock: Callable[[], float] | None = None,
        executor: Executor | None = None,
    ):
        self.config = load_experiment(config)
        self.output_dir = Path(output_dir) if output_dir is not None else self.config.resolved_output_dir()
        self.files = ResultFiles(self.output_dir)
        self.fresh = fresh
        self.progress = progress
        self.clock = clock
        self.executor = executor or LocalExecutor()
        self.fingerprint = digest(
            {
                "model": self.config.model.model_dump(mode="json"),
                "sampling": self.config.sampling.model_dump(mode="json", exclude={"noise_floor"}),
                "timing": self.config.timing.model_dump(mode="json"),
            }
        )
        self.rows: dict[str, dict[str, Any]] = {}
        """The rows saved so far (reused and new), by setting name."""
        self._flops: dict[tuple[str, tuple[str, ...]], RegionFlops] = {}
        self._baseline_images: torch.Tensor | None = None
        self._model: LoadedModel | None = None
        self._untuned: dict[str, Setting] = {}
        """Settings calibrated before they ran, as the config gives them (their rows' fingerprint), by name."""

    @cached_property
    def plan(self) -> RunPlan:
        """Every setting of the config, and those an earlier run saved (none with ``fresh``); read once."""
        settings = [Setting(BASELINE, None), *self.config.settings]
        if self.config.sampling.noise_floor:
            settings.append(Setting(NOISE_FLOOR, None))
        previous = {} if self.fresh else self.files.saved_rows(self.fingerprint)
        done = {s.name: previous[s.name] for s in settings if self._done(previous.get(s.name), s)}
        return RunPlan(settings, done)

    def run(self) -> ExperimentResults:
        """Run every setting not done yet and write the result files."""
        plan = self.plan
        if self.output_dir.is_dir():
            remove_partials(self.output_dir)
        self.rows = dict(plan.done)
        if plan.todo:
            self._run_settings(plan.todo)
        ordered = [self.rows[setting.name] for setting in plan.settings]
        results = ExperimentResults(ordered, self.output_dir, self._fidelity_metric(ordered))
        self._write(results)
        return results

    def _done(self, row: dict[str, Any] | None, setting: Setting) -> bool:
        return (
            row is not None
            and row.get("fingerprint") == _setting_digest(setting)
            and self.files.samples(setting.name).is_file()
        )

    def _run_settings(self, todo: list[Setting]) -> None:
        todo = [self._tuned(setting) for setting in todo]  # calibrated here, before any executor measures
        sampling, repeats = self.config.sampling, self.config.timing.repeats
        work = sum(shard.work(sampling.batch_size, repeats) for shard in map(self.whole, todo))
        held: list[tuple[Setting, Measurement]] = []  # finished before the baseline they are compared with
        with _torch_threads(self.config.timing.threads), _progress_bar(work, self.progress) as bar:
            for setting, measured in self.executor.run(self, todo, bar):
                if setting.name != BASELINE and BASELINE not in self.rows:
                    held.append((setting, measured))
                    continue
                for done in [(setting, measured), *held]:
                    self._save(*done)
                held.clear()

    def _save(self, setting: Setting, measured: Measurement) -> None:
        baseline = None if setting.name == BASELINE else self._baseline()
        self.rows[setting.name] = self._row(setting, measured, baseline)
        self.files.save_samples(setting.name, measured.images)
        self._write(ExperimentResults(list(self.rows.values()), self.output_dir, "psnr"), figures=False)

    def replica(self) -> ExperimentRunner:
        """A runner on the same config, output folder and clock with nothing loaded: what a worker measures with."""
        return ExperimentRunner(self.config, self.output_dir, progress=False, clock=self.clock)

    def whole(self, setting: Setting) -> Shard:
        """All of ``setting``'s samples as one shard; executors may
        :meth:`~cachekit.experiments.shard.Shard.split` it."""
        return Shard(setting, 0, 0, tuple(self.config.sampling.seed_list(second_set=setting.name == NOISE_FLOOR)))

    def prepare(self, settings: list[Setting]) -> None:
        """Load the model (once per runner), check the names ``settings`` give, and warm up."""
        if self._model is None:
            self._model = self._load_pipeline()
        self._resolve_names(self._model, settings)
        self._sample(self._model, None, self.config.sampling.seed_list()[:1], steps=2)  # warm-up

    def _tuned(self, setting: Setting) -> Setting:
        """``setting`` as it runs: a ``kind: calibrated`` policy with a budget and no file is first
        calibrated on the tuning seeds (the config's ``calibration`` section), never the evaluation ones."""
        cache = setting.cache
        if cache is None or not needs_tuning(cache):
            return setting
        policy = cache.policy
        if not isinstance(policy, CalibratedPolicy) or policy.budget is None:
            raise ConfigError(f"setting {setting.name!r}: a calibrated budget is calibrated as the entry's policy only")
        tuning, path = self.config.tuning(), self._tuning_file(setting.name)
        print(
            f"calibrating {setting.name!r} on tuning seeds {seed_range(tuning.spec.seed_list())}; evaluating "
            f"on held-out seeds {seed_range(self.config.sampling.seed_list())}",
            file=sys.stderr,
        )
        if self._model is None:
            self._model = self._load_pipeline()
        tuning.calibrate(self._model.pipeline, self._model.caller, cache, policy.budget, policy.search).save(path)
        tuned = cache.model_copy(update={"policy": policy.model_copy(update={"file": str(path)})})
        self._untuned[setting.name] = setting
        return Setting(setting.name, tuned)

    def _tuning_file(self, name: str) -> Path:
        return default_output(self.output_dir, name)

    def _resolve_names(self, model: LoadedModel, settings: list[Setting]) -> None:
        """Enable and disable each setting's cache config once, so that a name the model does not
        have (a region, a denoiser, a per-region or per-denoiser policy) fails before anything samples."""
        for setting in settings:
            if setting.cache is None:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the setting's real run warns again
                    enable(model.pipeline, setting.cache).disable()
            except CachekitError as error:
                raise type(error)(f"setting {setting.name!r}: {error}") from None

    def _load_pipeline(self) -> LoadedModel:
        spec = self.config.model
        pipeline = load_model(spec)
        hooks = experiment_plugins().hook
        caller = hooks.cachekit_experiment_caller(spec=spec)
        if caller is None:
            raise ExperimentError(f"no plugin knows how to call {type(pipeline).__name__} loaded from {spec.label!r}")
        denoisers = {d.name: d.module for d in hooks.cachekit_find_denoisers(pipeline=pipeline) or []}
        if not denoisers:
            raise ExperimentError(f"no plugin found a denoiser in {type(pipeline).__name__} loaded from {spec.label!r}")
        return LoadedModel(pipeline, caller, denoisers)

    def _baseline(self) -> torch.Tensor:
        """The baseline's samples, read back from disk once."""
        if self._baseline_images is None:
            self._baseline_images = self.files.load_samples(BASELINE)
        return self._baseline_images

    @cached_property
    def scorer(self) -> SampleScorer | None:
        """The model's sample scorer from the plugins, or ``None``."""
        return experiment_plugins().hook.cachekit_sample_scorer(spec=self.config.model)

    def measure(self, shard: Shard, bar: ProgressBar) -> Measurement:
        """Sample ``shard``'s seeds and, when it is the setting's first shard, time its first batch
        against the uncached model (after :meth:`prepare`); ``bar`` advances one step per pipeline call.

        The rounds interleave: uncached first batch, the shard's samples (its first batch
        timed), then the uncached and the cached first batch in turn for the other repeats. An
        uncached setting times its own first batch ``repeats`` times.
        """
        if self._model is None:
            raise ExperimentError("ExperimentRunner.measure needs prepare() first: no model is loaded")
        model, setting = self._model, shard.setting
        batch = list(shard.seeds[: self.config.sampling.batch_size])
        cached = setting.cache is not None
        uncached_laps = [self._time(model, None, batch, bar)] if cached and shard.timed else []
        run, handle = self._sample(model, setting.cache, list(shard.seeds), bar=bar, start=shard.start)
        if not shard.timed:
            return self._measured(run, handle, None)
        laps = [run.laps[0]]
        for _ in range(self.config.timing.repeats - 1):
            if cached:
                uncached_laps.append(self._time(model, None, batch, bar))
            laps.append(self._time(model, setting.cache, batch, bar))
        speedup = Speedup(tuple(uncached_laps), tuple(laps)) if cached else Speedup.uncached(tuple(laps))
        return self._measured(run, handle, speedup)

    def _measured(self, run: SettingRun, handle: CacheHandle | None, speedup: Speedup | None) -> Measurement:
        """What ``run`` counted, as plain data; the FLOP shares too when the shard is timed (``speedup``)."""
        calls = sum(run.calls.values())
        if handle is None:
            return Measurement(run.images, run.generations, run.calls, calls, calls, speedup=speedup)
        views = handle.views
        regions = {
            name: RegionCount(view.denoiser.name, view.region.name, view.stats.computed_rows, view.stats.rows)
            for name, view in views.items()
        }
        flops = {}
        if speedup is not None:
            for denoiser in dict.fromkeys(view.denoiser for view in views.values()):
                if denoiser.name in run.first_inputs:
                    group = [view.region for view in views.values() if view.denoiser is denoiser]
                    flops[denoiser.name] = self._region_flops(denoiser, group, run.first_inputs[denoiser.name])
        stats = handle.stats
        return Measurement(
            run.images,
            run.generations,
            run.calls,
            stats.refreshes,
            stats.refreshes + stats.reuses,
            regions,
            speedup,
            flops,
        )

    def _time(self, model: LoadedModel, cache: CacheConfig | None, batch: list[int], bar: ProgressBar) -> float:
        """Seconds of the denoising loop of one pipeline call on ``batch``."""
        return self._sample(model, cache, batch, bar=bar)[0].laps[0]

    def _sample(
        self,
        model: LoadedModel,
        cache: CacheConfig | None,
        seeds: list[int],
        steps: int | None = None,
        bar: ProgressBar | None = None,
        start: int = 0,
    ) -> tuple[SettingRun, CacheHandle | None]:
        """Sample ``seeds`` (samples ``start`` onwards of a setting) with caching by ``cache`` (``None``:
        uncached), timing each batch's loop."""
        handle = enable(model.pipeline, cache) if cache is not None else None
        try:
            return self._generate(model, seeds, steps, bar, start), handle
        finally:
            if handle is not None:
                handle.disable()

    def _generate(
        self, model: LoadedModel, seeds: list[int], steps: int | None, bar: ProgressBar | None, start: int
    ) -> SettingRun:
        sampling = self.config.sampling
        spec = self.config.model
        recorder = LoopRecorder(model.denoisers, loop_timer(spec.device, self.config.timing.threads, self.clock))
        images, laps = [], []
        with recorder.installed():
            for first in range(0, len(seeds), sampling.batch_size):
                index = range(start + first, start + min(first + sampling.batch_size, len(seeds)))
                request = SampleRequest(
                    steps=steps or sampling.steps,
                    seeds=[seeds[i - start] for i in index],
                    prompts=_cycle(sampling.prompts, index),
                    class_labels=_cycle(sampling.class_labels, index),
                    options=sampling.call,
                )
                images.append(model.caller(model.pipeline, request))
                laps.append(recorder.lap())
                if bar is not None:
                    bar.update(1)
        return SettingRun(torch.cat(images), laps, dict(recorder.calls), recorder.first_inputs)

    def _row(self, setting: Setting, measured: Measurement, baseline: torch.Tensor | None) -> dict[str, Any]:
        """One result row; ``baseline`` (its samples) is ``None`` for the baseline itself.

        ``loop_seconds`` and ``speedup`` come from the same timed rounds of the first batch
        (``speedup == baseline_seconds / loop_seconds``), see :mod:`cachekit.experiments.speedup`.
        """
        cache = setting.cache
        if measured.speedup is None:
            raise ExperimentError(f"setting {setting.name!r} was measured without its timed shard")
        flops_share = measured.flops_share()
        timing = measured.speedup.columns(flops_share, self.config.timing.ceiling_margin)
        row: dict[str, Any] = {
            "setting": setting.name,
            "policy": "none" if cache is None else json.dumps(cache.policy.model_dump(mode="json")),
            "regions": " ".join(measured.regions),
            "samples": len(measured.images),
            "loop_seconds": timing.pop("loop_seconds"),
            "speedup": timing.pop("speedup"),
            "refreshes": measured.per_generation(measured.refreshes),
            "calls": measured.per_generation(measured.region_calls),
            "flops_share": flops_share,
            **timing,
            "forecast": "none" if cache is None else cache.forecast.label,
        }
        row.update(dict.fromkeys(FIDELITY_METRICS))
        if baseline is not None and setting.name != NOISE_FLOOR:
            row.update(fidelity(measured.images, baseline))
        if self.scorer is not None:
            labels = _cycle(self.config.sampling.class_labels, range(len(measured.images)))
            row.update(self.scorer(measured.images, None if labels is None else torch.tensor(labels)))
        row["fingerprint"] = _setting_digest(self._untuned.get(setting.name, setting))
        return row

    def _region_flops(
        self, denoiser: Denoiser, regions: list[Region], inputs: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> RegionFlops:
        """FLOP shares of one denoiser's regions, counted once per denoiser and region set."""
        key = (denoiser.name, tuple(region.name for region in regions))
        if key not in self._flops:
            self._flops[key] = region_flop_shares(denoiser.module, regions, *inputs)
        return self._flops[key]

    def _fidelity_metric(self, rows: list[dict[str, Any]]) -> str:
        wanted = self.config.plot.fidelity
        available = metric_columns(rows)
        if wanted == "auto":
            return "fd" if "fd" in available else "psnr"
        if wanted not in available:
            raise ConfigError(f"plot.fidelity {wanted!r} is not a measured metric; measured: {listing(available)}")
        return wanted

    def _write(self, results: ExperimentResults, figures: bool = True) -> None:
        header = {
            "experiment": self.config.name,
            "fingerprint": self.fingerprint,
            "model": self.config.model.model_dump(mode="json"),
            "sampling": self.config.sampling.model_dump(mode="json"),
            "timing": self.config.timing.model_dump(mode="json"),
        }
        if self.config.calibration is not None:
            tuned = [s.name for s in self.config.settings if s.cache is not None and needs_tuning(s.cache)]
            header["calibration"] = {
                "tuning_seeds": self.config.calibration.seed_list(),
                "evaluation_seeds": self.config.sampling.seed_list(),
                "files": {name: str(self._tuning_file(name)) for name in tuned},
            }
        self.files.write(results, header)
        if not figures:
            return
        for row in results.rows:
            images = self.files.load_samples(row["setting"])
            save_grid(images[: self.config.plot.grid_samples], self.files.grid(row["setting"]))
        metric = results.fidelity_metric
        save_pareto(results.rows, metric, self._higher_is_better(metric), self.files.pareto, noise_floor=NOISE_FLOOR)

    def _higher_is_better(self, metric: str) -> bool:
        directions = {**FIDELITY_METRICS, **(dict(self.scorer.metrics) if self.scorer is not None else {})}
        return directions.get(metric, True)


def run_experiment(
    config: ExperimentConfig | Mapping[str, Any] | str | Path,
    output_dir: str | Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    clock: Callable[[], float] | None = None,
    executor: Executor | None = None,
) -> ExperimentResults:
    """Run an experiment config (a model, mapping or file path) and write its results.

    Args:
        config: the experiment; a file path gives the default name (its stem).
        output_dir: where results go (default: the config's ``output_dir``, else ``runs/<name>``).
        fresh: ignore results already in ``output_dir`` and run every setting again.
        progress: show a progress bar (needs ``tqdm``, in the ``experiments`` extra).
        clock: a function returning seconds to time loops with, instead of the device's
            (CPU time or CUDA events); for tests that simulate a loaded machine.
        executor: where the settings sample (default: this process); e.g.
            :class:`~cachekit.experiments.executors.RayExecutor` for a Ray cluster.
    """
    return ExperimentRunner(config, output_dir, fresh, progress, clock, executor).run()


def _setting_digest(setting: Setting) -> str:
    return digest(None if setting.cache is None else setting.cache.model_dump(mode="json"))


def _cycle(values: Sequence[T] | None, index: range) -> list[T] | None:
    """``values[i % len]`` for each ``i`` of ``index``: sample ``i``'s prompt or class label."""
    return None if values is None else [values[i % len(values)] for i in index]


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Torch's CPU thread count fixed at ``threads`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        yield _NoBar()
        return
    with tqdm(total=total, unit="batch") as bar:
        yield bar


class _NoBar:
    def update(self, count: int) -> None:
        """Nothing to show."""

    def set_description(self, text: str) -> None:
        """Nothing to show."""
