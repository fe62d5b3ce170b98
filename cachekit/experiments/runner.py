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
Loading, calling and scoring the model come from plugins (the hooks of
``cachekit.experiments.hookspecs``, described on the Plugin hooks page); this module never
imports diffusers, and reads a cached run through the handle's public ``views`` and
``stats`` only.
"""

from __future__ import annotations

import json
import math
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
from cachekit.engine.handle import CacheHandle, RegionView
from cachekit.errors import CachekitError, ConfigError, listing
from cachekit.experiments.atomic_file import remove_partials
from cachekit.experiments.caller import PipelineCaller, SampleRequest
from cachekit.experiments.config import BASELINE, NOISE_FLOOR, ExperimentConfig, load_experiment
from cachekit.experiments.entries import Setting
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.hooks import experiment_plugins, load_model
from cachekit.experiments.loop_timer import loop_timer
from cachekit.experiments.metrics import FIDELITY_METRICS, fidelity
from cachekit.experiments.plots import save_grid, save_pareto
from cachekit.experiments.recorder import LoopRecorder, SettingRun
from cachekit.experiments.results import ExperimentResults, ResultFiles, digest, metric_columns
from cachekit.experiments.scorer import SampleScorer
from cachekit.experiments.speedup import Speedup
from cachekit.flops import RegionFlops, computed_flop_share, region_flop_shares

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
    """

    def __init__(
        self,
        config: ExperimentConfig | Mapping[str, Any] | str | Path,
        output_dir: str | Path | None = None,
        fresh: bool = False,
        progress: bool = True,
        clock: Callable[[], float] | None = None,
    ):
        self.config = load_experiment(config)
        self.output_dir = Path(output_dir) if output_dir is not None else self.config.resolved_output_dir()
        self.files = ResultFiles(self.output_dir)
        self.fresh = fresh
        self.progress = progress
        self.clock = clock
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
        model = self._load_pipeline()
        self._resolve_names(model, todo)
        sampling, repeats = self.config.sampling, self.config.timing.repeats
        batches = math.ceil(len(sampling.seed_list()) / sampling.batch_size)
        rounds = sum(repeats - 1 + (repeats if setting.cache is not None else 0) for setting in todo)
        with (
            _torch_threads(self.config.timing.threads),
            _progress_bar(batches * len(todo) + rounds, self.progress) as bar,
        ):
            self._sample(model, None, sampling.seed_list()[:1], steps=2)  # warm-up
            for setting in todo:
                bar.set_description(setting.name)
                run, handle, speedup = self._measure(model, setting, bar)
                baseline = None if setting.name == BASELINE else self._baseline()
                row = self._row(setting, run, handle, baseline, speedup)
                self.files.save_samples(setting.name, run.images)
                self.rows[setting.name] = row
                self._write(ExperimentResults(list(self.rows.values()), self.output_dir, "psnr"), figures=False)

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

    def _measure(
        self, model: LoadedModel, setting: Setting, bar: Any
    ) -> tuple[SettingRun, CacheHandle | None, Speedup]:
        """Sample every seed of ``setting`` and time its first batch against the uncached model.

        The rounds interleave: uncached first batch, the setting's samples (its first batch
        timed), then the uncached and the cached first batch in turn for the other repeats. An
        uncached setting times its own first batch ``repeats`` times.
        """
        seeds = self.config.sampling.seed_list(second_set=setting.name == NOISE_FLOOR)
        batch = seeds[: self.config.sampling.batch_size]
        cached = setting.cache is not None
        uncached_laps = [self._time(model, None, batch, bar)] if cached else []
        run, handle = self._sample(model, setting.cache, seeds, bar=bar)
        laps = [run.laps[0]]
        for _ in range(self.config.timing.repeats - 1):
            if cached:
                uncached_laps.append(self._time(model, None, batch, bar))
            laps.append(self._time(model, setting.cache, batch, bar))
        speedup = Speedup(tuple(uncached_laps), tuple(laps)) if cached else Speedup.uncached(tuple(laps))
        return run, handle, speedup

    def _time(self, model: LoadedModel, cache: CacheConfig | None, batch: list[int], bar: Any) -> float:
        """Seconds of the denoising loop of one pipeline call on ``batch``."""
        return self._sample(model, cache, batch, bar=bar)[0].laps[0]

    def _sample(
        self, model: LoadedModel, cache: CacheConfig | None, seeds: list[int], steps: int | None = None, bar: Any = None
    ) -> tuple[SettingRun, CacheHandle | None]:
        """Sample ``seeds`` with caching by ``cache`` (``None``: uncached), timing each batch's loop."""
        handle = enable(model.pipeline, cache) if cache is not None else None
        try:
            return self._generate(model, seeds, steps, bar), handle
        finally:
            if handle is not None:
                handle.disable()

    def _generate(self, model: LoadedModel, seeds: list[int], steps: int | None, bar: Any) -> SettingRun:
        sampling = self.config.sampling
        spec = self.config.model
        recorder = LoopRecorder(model.denoisers, loop_timer(spec.device, self.config.timing.threads, self.clock))
        images, laps = [], []
        with recorder.installed():
            for start in range(0, len(seeds), sampling.batch_size):
                index = range(start, min(start + sampling.batch_size, len(seeds)))
                request = SampleRequest(
                    steps=steps or sampling.steps,
                    seeds=[seeds[i] for i in index],
                    prompts=_cycle(sampling.prompts, index),
                    class_labels=_cycle(sampling.class_labels, index),
                    options=sampling.call,
                )
                images.append(model.caller(model.pipeline, request))
                laps.append(recorder.lap())
                if bar is not None:
                    bar.update(1)
        return SettingRun(torch.cat(images), laps, dict(recorder.calls), recorder.first_inputs)

    def _row(
        self,
        setting: Setting,
        run: SettingRun,
        handle: CacheHandle | None,
        baseline: torch.Tensor | None,
        speedup: Speedup,
    ) -> dict[str, Any]:
        """One result row; ``baseline`` (its samples) is ``None`` for the baseline itself.

        ``loop_seconds`` and ``speedup`` come from the same timed rounds of the first batch
        (``speedup == baseline_seconds / loop_seconds``), see :mod:`cachekit.experiments.speedup`.
        """
        cache = setting.cache
        views = handle.views if handle is not None else {}
        refreshes = calls = sum(run.calls.values())  # uncached: every denoiser call computes
        if handle is not None:
            refreshes, calls = handle.stats.refreshes, handle.stats.refreshes + handle.stats.reuses
        flops_share = 1.0 if handle is None else self._flops_share(list(views.values()), run)
        timing = speedup.columns(flops_share, self.config.timing.ceiling_margin)
        row: dict[str, Any] = {
            "setting": setting.name,
            "policy": "none" if cache is None else json.dumps(cache.policy.model_dump(mode="json")),
            "regions": " ".join(views),
            "samples": len(run.images),
            "loop_seconds": timing.pop("loop_seconds"),
            "speedup": timing.pop("speedup"),
            "refreshes": run.per_generation(refreshes),
            "calls": run.per_generation(calls),
            "flops_share": flops_share,
            **timing,
            "forecast": "none" if cache is None else cache.forecast.label,
        }
        row.update(dict.fromkeys(FIDELITY_METRICS))
        if baseline is not None and setting.name != NOISE_FLOOR:
            row.update(fidelity(run.images, baseline))
        if self.scorer is not None:
            labels = _cycle(self.config.sampling.class_labels, range(len(run.images)))
            row.update(self.scorer(run.images, None if labels is None else torch.tensor(labels)))
        row["fingerprint"] = _setting_digest(setting)
        return row

    def _flops_share(self, views: list[RegionView], run: SettingRun) -> float | None:
        """Share of the uncached denoiser FLOPs computed, each denoiser weighted by its calls."""
        by_denoiser: dict[str, list[RegionView]] = {}
        for view in views:
            by_denoiser.setdefault(view.denoiser.name, []).append(view)
        computed = total = 0.0
        for name, group in by_denoiser.items():
            if name not in run.first_inputs:
                continue
            flops = self._region_flops(group, run.first_inputs[name])
            calls = run.calls.get(name, 0)
            local = {view.region.name: view.stats.computed_share for view in group}
            computed += flops.forward * calls * computed_flop_share(flops, local)
            total += flops.forward * calls
        return computed / total if total else None

    def _region_flops(self, views: list[RegionView], inputs: tuple[tuple[Any, ...], dict[str, Any]]) -> RegionFlops:
        """FLOP shares of one denoiser's regions, counted once per denoiser and region set."""
        denoiser = views[0].denoiser
        key = (denoiser.name, tuple(view.region.name for view in views))
        if key not in self._flops:
            self._flops[key] = region_flop_shares(denoiser.module, [view.region for view in views], *inputs)
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
) -> ExperimentResults:
    """Run an experiment config (a model, mapping or file path) and write its results.

    Args:
        config: the experiment; a file path gives the default name (its stem).
        output_dir: where results go (default: the config's ``output_dir``, else ``runs/<name>``).
        fresh: ignore results already in ``output_dir`` and run every setting again.
        progress: show a progress bar (needs ``tqdm``, in the ``experiments`` extra).
        clock: a function returning seconds to time loops with, instead of the device's
            (CPU time or CUDA events); for tests that simulate a loaded machine.
    """
    return ExperimentRunner(config, output_dir, fresh, progress, clock).run()


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
