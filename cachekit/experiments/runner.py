"""Runs an :class:`~cachekit.experiments.config.ExperimentConfig`: the baseline, then each setting.

Every setting samples the same seeds as the uncached baseline. Per setting the runner
records the wall time of the denoising loop (first denoiser call to last, per pipeline
call), the speedup over the baseline, the refreshes per generation, the share of the
denoiser FLOPs still computed, the fidelity to the baseline (PSNR, relative L1, SSIM) and
whatever the model's scorer measures (a Fréchet distance and class accuracy on the shipped
digits models). It writes ``results.csv``, ``results.json``, one PNG grid of samples per
setting and ``pareto.png`` (speedup against fidelity, the Pareto front marked).

Results are saved after each setting; rerunning the same config skips the settings already
done (same model, sampling and cache config) and reuses the saved baseline samples.
Loading, calling and scoring the model come from plugins (the hooks of
``cachekit.experiments.hookspecs``, described on the Plugin hooks page); this module never
imports diffusers, and reads a cached run through the handle's public ``views`` and
``stats`` only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from cachekit.api import enable
from cachekit.engine.handle import CacheHandle, RegionView
from cachekit.errors import ConfigError, listing
from cachekit.experiments.caller import PipelineCaller, SampleRequest
from cachekit.experiments.config import BASELINE, NOISE_FLOOR, ExperimentConfig, load_experiment
from cachekit.experiments.entries import Setting
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.hooks import experiment_plugins, load_model
from cachekit.experiments.metrics import FIDELITY_METRICS, fidelity
from cachekit.experiments.plots import save_grid, save_pareto
from cachekit.experiments.recorder import LoopRecorder, SettingRun
from cachekit.experiments.results import ExperimentResults, ResultFiles, digest, metric_columns
from cachekit.experiments.scorer import SampleScorer
from cachekit.flops import RegionFlops, computed_flop_share, region_flop_shares

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedModel:
    """The pipeline an experiment samples from, how to call it, and its denoisers by name."""

    pipeline: Any
    caller: PipelineCaller
    denoisers: dict[str, nn.Module]


class ExperimentRunner:
    """Runs one experiment into ``output_dir``; see the module docs for what is measured."""

    def __init__(
        self,
        config: ExperimentConfig | Mapping[str, Any] | str | Path,
        output_dir: str | Path | None = None,
        fresh: bool = False,
        progress: bool = True,
    ):
        self.config = load_experiment(config)
        self.output_dir = Path(output_dir) if output_dir is not None else self.config.resolved_output_dir()
        self.files = ResultFiles(self.output_dir)
        self.fresh = fresh
        self.progress = progress
        self.fingerprint = digest(
            {
                "model": self.config.model.model_dump(mode="json"),
                "sampling": self.config.sampling.model_dump(mode="json", exclude={"noise_floor"}),
            }
        )
        self._flops: dict[tuple[str, tuple[str, ...]], RegionFlops] = {}
        self._baseline_images: torch.Tensor | None = None

    def run(self) -> ExperimentResults:
        """Run every setting not done yet and write the result files."""
        previous = {} if self.fresh else self.files.saved_rows(self.fingerprint)
        plan = [Setting(BASELINE, None), *self.config.settings]
        if self.config.sampling.noise_floor:
            plan.append(Setting(NOISE_FLOOR, None))
        todo = [setting for setting in plan if not self._done(previous.get(setting.name), setting)]
        rows = {name: row for name, row in previous.items() if name in {s.name for s in plan}}
        if todo:
            rows.update(self._run_settings(todo, rows))
        ordered = [rows[setting.name] for setting in plan]
        results = ExperimentResults(ordered, self.output_dir, self._fidelity_metric(ordered))
        self._write(results)
        return results

    def _done(self, row: dict[str, Any] | None, setting: Setting) -> bool:
        return (
            row is not None
            and row.get("fingerprint") == _setting_digest(setting)
            and self.files.samples(setting.name).is_file()
        )

    def _run_settings(self, todo: list[Setting], rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        model = self._load_pipeline()
        synchronize = torch.cuda.synchronize if torch.device(self.config.model.device).type == "cuda" else _nothing
        sampling = self.config.sampling
        batches = math.ceil(len(sampling.seed_list()) / sampling.batch_size)
        with _progress_bar(batches * len(todo), self.progress) as bar:
            self._generate(model, sampling.seed_list()[:1], LoopRecorder(model.denoisers), steps=2)  # warm-up
            for setting in todo:
                bar.set_description(setting.name)
                reference = None
                if setting.name != BASELINE:  # the uncached first batch, timed right before this setting's
                    reference = self._generate(
                        model, sampling.seed_list()[: sampling.batch_size], LoopRecorder(model.denoisers, synchronize)
                    ).laps[0]
                run, handle = self._run_setting(model, setting, LoopRecorder(model.denoisers, synchronize), bar)
                baseline = None if setting.name == BASELINE else self._baseline()
                rows[setting.name] = self._row(setting, run, handle, baseline, reference)
                self.files.save_samples(setting.name, run.images)
                self._write(ExperimentResults(list(rows.values()), self.output_dir, "psnr"), figures=False)
        return rows

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

    def _run_setting(
        self, model: LoadedModel, setting: Setting, recorder: LoopRecorder, bar: Any
    ) -> tuple[SettingRun, CacheHandle | None]:
        seeds = self.config.sampling.seed_list(second_set=setting.name == NOISE_FLOOR)
        handle = enable(model.pipeline, setting.cache) if setting.cache is not None else None
        try:
            run = self._generate(model, seeds, recorder, bar=bar)
        finally:
            if handle is not None:
                handle.disable()
        return run, handle

    def _generate(
        self, model: LoadedModel, seeds: list[int], recorder: LoopRecorder, steps: int | None = None, bar: Any = None
    ) -> SettingRun:
        sampling = self.config.sampling
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
        reference_seconds: float | None,
    ) -> dict[str, Any]:
        """One result row; ``baseline`` (its samples) is ``None`` for the baseline itself.

        The speedup divides ``reference_seconds``, the uncached loop on the first batch timed
        just before this setting, by this setting's loop on that same batch: both measured
        within the same minute, so a shared machine's changing load cancels out.
        """
        cache = setting.cache
        views = handle.views if handle is not None else {}
        refreshes = calls = sum(run.calls.values())  # uncached: every denoiser call computes
        if handle is not None:
            refreshes, calls = handle.stats.refreshes, handle.stats.refreshes + handle.stats.reuses
        row: dict[str, Any] = {
            "setting": setting.name,
            "policy": "none" if cache is None else json.dumps(cache.policy.model_dump(mode="json")),
            "regions": " ".join(views),
            "samples": len(run.images),
            "loop_seconds": run.loop_seconds,
            "speedup": 1.0 if reference_seconds is None else reference_seconds / max(run.laps[0], 1e-12),
            "refreshes": run.per_generation(refreshes),
            "calls": run.per_generation(calls),
            "flops_share": 1.0 if handle is None else self._flops_share(list(views.values()), run),
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
) -> ExperimentResults:
    """Run an experiment config (a model, mapping or file path) and write its results.

    Args:
        config: the experiment; a file path gives the default name (its stem).
        output_dir: where results go (default: the config's ``output_dir``, else ``runs/<name>``).
        fresh: ignore results already in ``output_dir`` and run every setting again.
        progress: show a progress bar (needs ``tqdm``, in the ``experiments`` extra).
    """
    return ExperimentRunner(config, output_dir, fresh, progress).run()


def _setting_digest(setting: Setting) -> str:
    return digest(None if setting.cache is None else setting.cache.model_dump(mode="json"))


def _cycle(values: Sequence[T] | None, index: range) -> list[T] | None:
    """``values[i % len]`` for each ``i`` of ``index``: sample ``i``'s prompt or class label."""
    return None if values is None else [values[i % len(values)] for i in index]


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


def _nothing() -> None:
    """No device to wait for."""


class _NoBar:
    def update(self, count: int) -> None:
        """Nothing to show."""

    def set_description(self, text: str) -> None:
        """Nothing to show."""
