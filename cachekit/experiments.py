"""Runs an :class:`~cachekit.experiment_config.ExperimentConfig`: the baseline, then each setting.

Every setting samples the same seeds as the uncached baseline. Per setting the runner
records the wall time of the denoising loop (first denoiser call to last, per pipeline
call), the speedup over the baseline, the refreshes per generation, the share of the
denoiser FLOPs still computed, the fidelity to the baseline (PSNR, relative L1, SSIM) and
whatever the model's scorer measures (a Fréchet distance and class accuracy on the shipped
digits models). It writes ``results.csv``, ``results.json``, one PNG grid of samples per
setting and ``pareto.png`` (speedup against fidelity, the Pareto front marked).

Results are saved after each setting; rerunning the same config skips the settings already
done (same model, sampling and cache config) and reuses the saved baseline samples.
Model loading and scoring come from plugins (:func:`~cachekit.hookspecs.cachekit_load_experiment_model`,
:func:`~cachekit.hookspecs.cachekit_sample_scorer`); this module never imports diffusers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch

from cachekit.api import enable
from cachekit.engine.handle import CacheHandle
from cachekit.errors import CachekitError, ConfigError, listing
from cachekit.experiment_config import BASELINE, NOISE_FLOOR, ExperimentConfig, Setting, load_experiment
from cachekit.metrics import computed_flop_share, module_flops, psnr, relative_l1, ssim
from cachekit.plugin_manager import load_plugins

FIDELITY_METRICS: dict[str, bool] = {"psnr": True, "ssim": True, "relative_l1": False}
"""Fidelity to the baseline, by name: True when higher is better."""

DEMO_EXPERIMENT: dict[str, Any] = {
    "name": "demo",
    "model": {"source": "digits-unet"},
    "sampling": {"steps": 50, "num_samples": 128, "batch_size": 64},
    "policies": [
        {"grid": {"interval": [2, 3, 5]}, "branch": 0},
        {"kind": "nonuniform", "interval": 5, "center": 10, "power": 2.0, "branch": 0},
    ],
}
"""The experiment ``cachekit demo`` runs: DeepCache's schedules on the shipped digits UNet, DDIM 50 steps."""


class SampleScorer(Protocol):
    """Scores the samples of one setting; returned by a ``cachekit_sample_scorer`` plugin."""

    metrics: Mapping[str, bool]
    """The names the scorer returns, each mapped to True when higher is better."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """Score ``images`` ``(N, C, H, W)`` in ``[0, 1]``; ``labels`` are the requested classes, if any."""


class ExperimentError(CachekitError, RuntimeError):
    """An experiment cannot run: no plugin loads its model, or the pipeline returned no images."""


@dataclass
class LoopRecorder:
    """Times the denoising loop and keeps each denoiser's first call, through forward hooks.

    The loop of one pipeline call runs from the first denoiser call's start to the last
    one's end, so text encoding and VAE decoding are not counted.
    """

    modules: dict[str, torch.nn.Module]
    synchronize: Callable[[], None] = field(default=lambda: None)
    first_inputs: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _start: float | None = None
    _end: float | None = None

    @contextmanager
    def installed(self) -> Iterator[LoopRecorder]:
        """Record while the ``with`` block runs."""
        hooks = []
        for name, module in self.modules.items():
            hooks.append(module.register_forward_pre_hook(self._before(name), with_kwargs=True))
            hooks.append(module.register_forward_hook(self._after))
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()

    def _before(self, name: str) -> Callable[..., None]:
        def before(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self._start is None:
                self.synchronize()
                self._start = time.perf_counter()
            self.first_inputs.setdefault(name, (args, kwargs))
            self.calls[name] = self.calls.get(name, 0) + 1

        return before

    def _after(self, *_: Any) -> None:
        self.synchronize()
        self._end = time.perf_counter()

    def lap(self) -> float:
        """Seconds of the loop since the last lap; 0 when no denoiser ran."""
        seconds = 0.0 if self._start is None or self._end is None else self._end - self._start
        self._start = self._end = None
        return seconds


@dataclass
class SettingRun:
    """The samples of one setting and what was measured while sampling them."""

    images: torch.Tensor
    laps: list[float]
    """Seconds of the denoising loop of each pipeline call (each batch), in order."""
    calls: dict[str, int]
    first_inputs: dict[str, tuple[tuple[Any, ...], dict[str, Any]]]

    @property
    def loop_seconds(self) -> float:
        """Seconds of every denoising loop together."""
        return sum(self.laps)

    @property
    def generations(self) -> int:
        """Pipeline calls made."""
        return len(self.laps)


@dataclass
class ExperimentResults:
    """The rows of an experiment (one per setting, baseline first) and where they were written."""

    rows: list[dict[str, Any]]
    output_dir: Path
    fidelity_metric: str

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and formatted cells of the summary table printed by ``cachekit run``."""
        metric_columns = [key for key in self.rows[0] if key not in _ROW_HEAD and key != "fingerprint"]
        headers = ["setting", "speedup", "refreshes", "FLOPs", *metric_columns]
        body = [
            [
                row["setting"],
                _fmt(row["speedup"], "{:.2f}x"),
                _fmt(row["refreshes"], "{:.1f}"),
                _fmt(row["flops_share"], "{:.0%}"),
                *(_fmt(row.get(key)) for key in metric_columns),
            ]
            for row in self.rows
        ]
        return headers, body

    def where(self) -> str:
        """Where the result files are, for the end of ``cachekit run``."""
        folder = self.output_dir
        return (
            f"results: {folder / 'results.csv'} and {folder / 'results.json'}\n"
            f"sample grids: {folder / 'grids'}/ (one PNG per setting)\n"
            f"speedup against {self.fidelity_metric}, Pareto front marked: {folder / 'pareto.png'}"
        )


_ROW_HEAD = ("setting", "policy", "regions", "samples", "loop_seconds", "speedup", "refreshes", "calls", "flops_share")


def _fmt(value: Any, pattern: str = "{:.4g}") -> str:
    return "-" if value is None else pattern.format(value)


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
        self.fresh = fresh
        self.progress = progress
        self.fingerprint = _digest(
            {
                "model": self.config.model.model_dump(mode="json"),
                "sampling": self.config.sampling.model_dump(mode="json", exclude={"noise_floor"}),
            }
        )
        self._flop_cache: dict[tuple[str, tuple[str, ...]], tuple[int, dict[str, float]]] = {}
        self._baseline_images: torch.Tensor | None = None

    def run(self) -> ExperimentResults:
        """Run every setting not done yet and write the result files."""
        previous = {} if self.fresh else self._load_previous()
        plan = [Setting(BASELINE, None), *self.config.settings]
        if self.config.sampling.noise_floor:
            plan.append(Setting(NOISE_FLOOR, None))
        todo = [s for s in plan if not _done(previous.get(s.name), _setting_digest(s), self._samples_path(s.name))]
        rows = {name: row for name, row in previous.items() if name in {s.name for s in plan}}
        if todo:
            rows.update(self._run_settings(todo, rows))
        ordered = [rows[setting.name] for setting in plan]
        results = ExperimentResults(ordered, self.output_dir, self._fidelity_metric(ordered))
        self._write(results)
        return results

    def _run_settings(self, todo: list[Setting], rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        pipeline, denoisers = self._load_pipeline()
        synchronize = torch.cuda.synchronize if torch.device(self.config.model.device).type == "cuda" else _nothing
        sampling = self.config.sampling
        batches = math.ceil(len(sampling.seed_list()) / sampling.batch_size)
        with _progress_bar(batches * len(todo), self.progress) as bar:
            self._generate(pipeline, sampling.seed_list()[:1], LoopRecorder(denoisers), steps=2)  # warm-up
            for setting in todo:
                bar.set_description(setting.name)
                reference = None
                if setting.name != BASELINE:  # the uncached first batch, timed right before this setting's
                    reference = self._generate(
                        pipeline, sampling.seed_list()[: sampling.batch_size], LoopRecorder(denoisers, synchronize)
                    ).laps[0]
                run, handle = self._run_setting(pipeline, setting, denoisers, synchronize, bar)
                baseline = None if setting.name == BASELINE else self._baseline()
                rows[setting.name] = self._row(setting, run, handle, denoisers, baseline, reference)
                self._save_samples(setting.name, run.images)
                self._write(ExperimentResults(list(rows.values()), self.output_dir, "psnr"), figures=False)
        return rows

    def _load_pipeline(self) -> tuple[Any, dict[str, torch.nn.Module]]:
        pm = load_plugins()
        spec = self.config.model
        pipeline = pm.hook.cachekit_load_experiment_model(spec=spec)
        if pipeline is None:
            plugins = [name for name, _ in pm.list_name_plugin()]
            raise ExperimentError(
                f"no plugin loads model {spec.label!r}; installed plugins: {listing(plugins)}. Install the "
                "'diffusers' extra for local folders and hub ids, or a plugin that knows this model"
            )
        _quiet(pipeline)
        denoisers = {d.name: d.module for d in pm.hook.cachekit_find_denoisers(pipeline=pipeline) or []}
        if not denoisers:
            raise ExperimentError(f"no plugin found a denoiser in {type(pipeline).__name__} loaded from {spec.label!r}")
        return pipeline, denoisers

    def _baseline(self) -> torch.Tensor:
        """The baseline's samples, read back from disk once."""
        if self._baseline_images is None:
            self._baseline_images = torch.load(self._samples_path(BASELINE), weights_only=True)
        return self._baseline_images

    @cached_property
    def scorer(self) -> SampleScorer | None:
        """The model's sample scorer from the plugins, or ``None``."""
        return load_plugins().hook.cachekit_sample_scorer(spec=self.config.model)

    def _run_setting(
        self,
        pipeline: Any,
        setting: Setting,
        denoisers: dict[str, torch.nn.Module],
        synchronize: Callable[[], None],
        bar: Any,
    ) -> tuple[SettingRun, CacheHandle | None]:
        seeds = self.config.sampling.seed_list(second_set=setting.name == NOISE_FLOOR)
        recorder = LoopRecorder(denoisers, synchronize)
        handle = enable(pipeline, setting.cache) if setting.cache is not None else None
        try:
            run = self._generate(pipeline, seeds, recorder, bar=bar)
        finally:
            if handle is not None:
                handle.disable()
        return run, handle

    def _generate(
        self, pipeline: Any, seeds: list[int], recorder: LoopRecorder, steps: int | None = None, bar: Any = None
    ) -> SettingRun:
        sampling = self.config.sampling
        images, laps = [], []
        with recorder.installed():
            for start in range(0, len(seeds), sampling.batch_size):
                index = range(start, min(start + sampling.batch_size, len(seeds)))
                kwargs = self._call_kwargs([seeds[i] for i in index], index, steps or sampling.steps)
                output = pipeline(**kwargs)
                laps.append(recorder.lap())
                images.append(_as_images(output))
                if bar is not None:
                    bar.update(1)
        return SettingRun(torch.cat(images), laps, dict(recorder.calls), recorder.first_inputs)

    def _call_kwargs(self, seeds: list[int], index: range, steps: int) -> dict[str, Any]:
        sampling = self.config.sampling
        kwargs: dict[str, Any] = {
            **sampling.call,
            "num_inference_steps": steps,
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            "output_type": "pt",
        }
        if sampling.prompts is not None:
            kwargs["prompt"] = [sampling.prompts[i % len(sampling.prompts)] for i in index]
        elif sampling.class_labels is not None:
            kwargs["class_labels"] = [sampling.class_labels[i % len(sampling.class_labels)] for i in index]
        else:
            kwargs["batch_size"] = len(seeds)
        return kwargs

    def _labels(self, count: int) -> torch.Tensor | None:
        labels = self.config.sampling.class_labels
        return None if labels is None else torch.tensor([labels[i % len(labels)] for i in range(count)])

    def _row(
        self,
        setting: Setting,
        run: SettingRun,
        handle: CacheHandle | None,
        denoisers: dict[str, torch.nn.Module],
        baseline: torch.Tensor | None,
        reference_seconds: float | None,
    ) -> dict[str, Any]:
        """One result row; ``baseline`` (its samples) is ``None`` for the baseline itself.

        The speedup divides ``reference_seconds``, the uncached loop on the first batch timed
        just before this setting, by this setting's loop on that same batch: both measured
        within the same minute, so a shared machine's changing load cancels out.
        """
        cache = setting.cache
        row: dict[str, Any] = {
            "setting": setting.name,
            "policy": "none" if cache is None else json.dumps(cache.policy.model_dump(mode="json")),
            "regions": "" if handle is None else " ".join(handle.regions),
            "samples": len(run.images),
            "loop_seconds": run.loop_seconds,
            "speedup": 1.0 if reference_seconds is None else reference_seconds / max(run.laps[0], 1e-12),
            "refreshes": _per_generation(handle.stats.refreshes if handle else sum(run.calls.values()), run),
            "calls": _per_generation(
                handle.stats.refreshes + handle.stats.reuses if handle else sum(run.calls.values()), run
            ),
            "flops_share": 1.0 if handle is None else self._flops_share(handle, run, denoisers),
        }
        row.update(dict.fromkeys(FIDELITY_METRICS))
        if baseline is not None and setting.name != NOISE_FLOOR:
            row.update(_fidelity(run.images, baseline))
        if self.scorer is not None:
            row.update(self.scorer(run.images, self._labels(len(run.images))))
        row["fingerprint"] = _setting_digest(setting)
        return row

    def _flops_share(self, handle: CacheHandle, run: SettingRun, denoisers: dict[str, torch.nn.Module]) -> float | None:
        """Share of the uncached denoiser FLOPs computed, each denoiser weighted by its calls."""
        computed = total = 0.0
        by_denoiser: dict[str, list[Any]] = {}
        for view in handle.views.values():
            by_denoiser.setdefault(view.denoiser.name, []).append(view)
        for name, views in by_denoiser.items():
            if name not in run.first_inputs:
                continue
            regions = [view.region for view in views]
            forward_flops, shares = self._region_shares(name, denoisers[name], regions, run.first_inputs[name])
            calls = run.calls.get(name, 0)
            local = {view.region.name: view.stats.computed_share for view in views}
            computed += forward_flops * calls * computed_flop_share(shares, local)
            total += forward_flops * calls
        return computed / total if total else None

    def _region_shares(
        self, name: str, model: torch.nn.Module, regions: list[Any], inputs: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> tuple[int, dict[str, float]]:
        key = (name, tuple(region.name for region in regions))
        if key not in self._flop_cache:
            paths = {path for region in regions for path in region.modules}
            forward_flops, inside = module_flops(model, paths, *inputs)
            shares = {r.name: sum(inside[p] for p in r.modules) / max(forward_flops, 1) for r in regions}
            self._flop_cache[key] = (forward_flops, shares)
        return self._flop_cache[key]

    def _fidelity_metric(self, rows: list[dict[str, Any]]) -> str:
        wanted = self.config.plot.fidelity
        available = [key for key in rows[0] if key not in _ROW_HEAD and key != "fingerprint"]
        if wanted == "auto":
            return "fd" if "fd" in available else "psnr"
        if wanted not in available:
            raise ConfigError(f"plot.fidelity {wanted!r} is not a measured metric; measured: {listing(available)}")
        return wanted

    def _samples_path(self, name: str) -> Path:
        return self.output_dir / "samples" / f"{slug(name)}.pt"

    def _save_samples(self, name: str, images: torch.Tensor) -> None:
        path = self._samples_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(images.contiguous(), path)

    def _load_previous(self) -> dict[str, dict[str, Any]]:
        path = self.output_dir / "results.json"
        if not path.is_file():
            return {}
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != self.fingerprint:
            return {}
        return {row["setting"]: row for row in saved.get("rows", [])}

    def _write(self, results: ExperimentResults, figures: bool = True) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "experiment": self.config.name,
            "fingerprint": self.fingerprint,
            "model": self.config.model.model_dump(mode="json"),
            "sampling": self.config.sampling.model_dump(mode="json"),
            "fidelity_metric": results.fidelity_metric,
            "rows": results.rows,
        }
        (self.output_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        columns = list(dict.fromkeys(key for row in results.rows for key in row))
        with (self.output_dir / "results.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(results.rows)
        if figures:
            from cachekit.experiment_plots import save_grid, save_pareto

            for row in results.rows:
                images = torch.load(self._samples_path(row["setting"]), weights_only=True)
                save_grid(
                    images[: self.config.plot.grid_samples], self.output_dir / "grids" / f"{slug(row['setting'])}.png"
                )
            save_pareto(
                results.rows,
                results.fidelity_metric,
                self._higher_is_better(results.fidelity_metric),
                self.output_dir / "pareto.png",
                noise_floor=NOISE_FLOOR,
            )

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


def slug(name: str) -> str:
    """A file-name-safe form of a setting name."""
    return re.sub(r"[^A-Za-z0-9.=_+-]+", "_", name).strip("_") or "setting"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _setting_digest(setting: Setting) -> str:
    return _digest(None if setting.cache is None else setting.cache.model_dump(mode="json"))


def _done(row: dict[str, Any] | None, digest: str, samples: Path) -> bool:
    return row is not None and row.get("fingerprint") == digest and samples.is_file()


def _per_generation(count: int, run: SettingRun) -> float:
    """``count`` per pipeline call (a generation of one batch)."""
    return count / max(run.generations, 1)


def _fidelity(images: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """PSNR (mean over samples, ``None`` when identical), relative L1 and SSIM against the baseline."""
    values = [psnr(image, ref, data_range=1.0) for image, ref in zip(images, reference, strict=True)]
    finite = [value for value in values if math.isfinite(value)]
    return {
        "psnr": sum(finite) / len(finite) if finite else None,
        "ssim": ssim(images, reference, data_range=1.0) if images.dim() == 4 else None,
        "relative_l1": relative_l1(images, reference),
    }


def _as_images(output: Any) -> torch.Tensor:
    """The images of a pipeline output as a float tensor ``(N, C, H, W)`` (or the pipeline's own shape)."""
    images = getattr(output, "images", None)
    if images is None and isinstance(output, tuple) and output:
        images = output[0]
    if images is None:
        raise ExperimentError(f"the pipeline returned {type(output).__name__} with no 'images'; cannot compare outputs")
    if not isinstance(images, torch.Tensor):
        import numpy as np

        array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
        images = torch.from_numpy(array).movedim(-1, 1) if array.ndim == 4 else torch.from_numpy(array)
    return images.detach().float().cpu()


def _quiet(pipeline: Any) -> None:
    """Turn off the pipeline's own per-step progress bar (the runner shows one for the whole run)."""
    configure = getattr(pipeline, "set_progress_bar_config", None)
    if callable(configure):
        configure(disable=True)


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
