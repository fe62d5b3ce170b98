"""Calibrating a pipeline or model: record uncached generations, model the error, choose steps.

:func:`calibrate_model` is the Python API on a target you already hold; ``cachekit calibrate``
and :func:`cachekit.calibrate` run it from an experiment config (the seeds, prompts or class
labels of its ``calibration`` section).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cachekit.api import ConfigSource, enable
from cachekit.calibration.budget import Budget
from cachekit.calibration.error_model import error_matrix
from cachekit.calibration.file import (
    CalibrationFile,
    DriftTrust,
    ModelInfo,
    RegionCalibration,
    ScheduleErrors,
    SearchRecord,
)
from cachekit.calibration.identity import ModelIdentity
from cachekit.calibration.output_error import OutputError
from cachekit.calibration.probe_fit import ProbeFit, accumulated_drift, fit_probe
from cachekit.calibration.recorder import Recorder
from cachekit.calibration.search import Schedules, Search, SearchResult, search_schedules
from cachekit.calibration.solver import Solution, schedule_errors, solve
from cachekit.calibration.statistics import RegionStatistics
from cachekit.config import CacheConfig, load_config
from cachekit.engine.handle import CacheHandle
from cachekit.errors import CachekitError
from cachekit.policies.schedule import SchedulePolicy
from cachekit.reuse.spec import ForecastSpec


def uniform_steps(num_steps: int, refreshes: int) -> tuple[int, ...]:
    """``refreshes`` steps spread evenly over ``num_steps``, step 0 first: the ``uniform`` policy's at
    interval ``ceil(n / k)`` when that gives ``k`` refreshes, else ``round(index * n / k)``."""
    count = min(refreshes, num_steps)
    uniform = tuple(range(0, num_steps, math.ceil(num_steps / count)))
    if len(uniform) == count:
        return uniform
    return tuple(sorted({round(index * num_steps / count) for index in range(count)}))


def _errors(solution: Solution) -> ScheduleErrors:
    return ScheduleErrors(
        steps=solution.steps,
        step_errors=solution.step_errors,
        total_error=solution.total,
        worst_error=solution.worst,
    )


def _probe_fit(statistics: RegionStatistics, matrix: np.ndarray, probe: str) -> ProbeFit | None:
    try:
        return fit_probe(probe, accumulated_drift(statistics.step_drift), matrix)
    except CachekitError:
        return None


def _drift_trust(trust: float | None, probe: str) -> DriftTrust | None:
    return None if trust is None else DriftTrust(probe=probe, trust=trust)


ForecastSource = ForecastSpec | str | Mapping[str, Any]
"""A forecast as a config gives it: a spec, a forecaster's name, or ``{name: ..., PARAMETER: VALUE}``."""


def calibrate_model(
    target: Any,
    generate: Callable[[], object],
    budget: Budget | dict[str, Any],
    cache: ConfigSource = None,
    forecasts: Sequence[ForecastSource] | None = None,
    sample_size: int = 1024,
    seed: int = 0,
    probe: str = "entry_input",
    samples: dict[str, Any] | None = None,
    search: Search | Mapping[str, Any] | None = None,
) -> dict[str, CalibrationFile]:
    """Calibrate the regions ``cache`` selects on ``target`` (a pipeline or an ``nn.Module``).

    Args:
        target: what :func:`cachekit.enable` accepts.
        generate: runs the calibration generations on ``target`` (any number; every one
            recorded, uncached). Use seeds you will not evaluate on.
        budget: a :class:`Budget` or its mapping (``{"refreshes": 5}``, ``{"error": 2.0}``).
        cache: selects regions as in :func:`cachekit.enable` (its policy is ignored).
        forecasts: forecasts to calibrate for, each as a config's ``forecast`` (``"linear"``,
            ``{"name": "taylor", "order": 2}``; default: ``cache``'s ``forecast``).
        sample_size: values kept per batch row and step of each region (the memory bound).
        seed: seeds the subsample.
        probe: the probe whose drift is fitted to the error.
        samples: what to note in the files about the samples (e.g. the seeds).
        search: refine the error model's schedules against the output (a :class:`Search` or
            its mapping, ``{"evaluations": 100}``): ``generate`` must then return the
            generated samples and sample the same noise every run. Each evaluation runs
            ``generate`` once with candidate schedules (see :mod:`cachekit.calibration.search`).

    Returns:
        One :class:`CalibrationFile` per forecast, by its label (``linear``, ``taylor2``).
    """
    budget = budget if isinstance(budget, Budget) else Budget.model_validate(budget)
    search = search if search is None or isinstance(search, Search) else Search.model_validate(search)
    settings = load_config(cache)
    specs = tuple(ForecastSpec.model_validate(spec) for spec in forecasts) if forecasts else (settings.forecast,)
    statistics: dict[str, RegionStatistics] = {}

    def on_generation(region: str, trajectory: Any) -> None:
        statistics.setdefault(region, RegionStatistics(region, specs)).add(trajectory)

    recorder = Recorder(target, settings, on_generation, sample_size, seed, probe)
    with recorder.recording() as handle:
        identity = _identity(handle)
        uncached = generate()
    missing = [name for name in handle.views if name not in statistics]
    if missing:
        raise CachekitError(f"calibration: regions {missing} never ran; did generate() call the model?")
    measure = None
    if search is not None:
        measure = OutputError(uncached)
        measure.check_deterministic(generate())
    files = {}
    for spec in specs:
        tables = {name: statistics[name].models[spec.label].table for name in handle.views}
        picked = {name: solve(table, budget) for name, table in tables.items()}
        searched = None
        if search is not None and measure is not None:
            start = {name: solution.steps for name, solution in picked.items()}
            cost = _output_cost(target, generate, settings, spec, measure)
            searched = search_schedules(start, cost, next(iter(tables.values())).shape[1], search)
        regions = _regions(handle, statistics, spec.label, picked, searched, probe)
        record = None if searched is None or search is None else _record(searched, search)
        files[spec.label] = _file(statistics, identity, spec, budget, sample_size, samples or {}, regions, record)
    return files


def _output_cost(
    target: Any, generate: Callable[[], object], settings: CacheConfig, forecast: ForecastSpec, measure: OutputError
) -> Callable[[Schedules], float]:
    """The output error of ``generate`` run with each region refreshing at the given steps."""

    def cost(schedules: Schedules) -> float:
        policies = {name: SchedulePolicy(steps=steps) for name, steps in schedules.items()}
        update = {"forecast": forecast, "region_policies": policies, "denoiser_policies": {}}
        config = settings.model_copy(update=update)
        handle = enable(target, config)
        try:
            return measure(generate())
        finally:
            handle.disable()

    return cost


def _record(searched: SearchResult, search: Search) -> SearchRecord:
    return SearchRecord(
        evaluations=searched.evaluations,
        radius=search.radius,
        start_output_error=searched.start_cost,
        output_error=searched.cost,
    )


def _identity(handle: CacheHandle) -> tuple[dict[str, ModelInfo], str | None]:
    models, scheduler = {}, None
    for view in handle.views.values():
        identity = ModelIdentity.of(view.denoiser.module)
        models[view.denoiser.name] = ModelInfo(class_name=identity.class_name, config_hash=identity.config_hash)
        if view.denoiser.scheduler is not None:
            scheduler = type(view.denoiser.scheduler).__name__
    return models, scheduler


def _regions(
    handle: CacheHandle,
    statistics: dict[str, RegionStatistics],
    label: str,
    picked: dict[str, Solution],
    searched: SearchResult | None,
    probe: str,
) -> dict[str, RegionCalibration]:
    """Each region's calibration for forecast ``label``: the chosen schedule (the search's, when one
    ran), the error model, and the drift's trust for the chosen schedule."""
    regions = {}
    for name, view in handle.views.items():
        model = statistics[name].models[label]
        table = model.table
        chosen = picked[name] if searched is None else schedule_errors(table, searched.schedules[name])
        moved = searched is not None and chosen.steps != picked[name].steps
        uniform = schedule_errors(table, uniform_steps(table.shape[1], len(chosen.steps)))
        matrix = error_matrix(table)
        regions[name] = RegionCalibration(
            denoiser=view.denoiser.name,
            mode=view.region.mode,
            schedule=_errors(chosen),
            model_schedule=_errors(picked[name]) if moved else None,
            uniform=_errors(uniform),
            errors=[[None if np.isnan(value) else float(value) for value in row] for row in matrix],
            probe_fit=_probe_fit(statistics[name], matrix, probe),
            drift_trust=_drift_trust(model.trust_moments.trust(chosen.steps), probe),
        )
    return regions


def _file(
    statistics: dict[str, RegionStatistics],
    identity: tuple[dict[str, ModelInfo], str | None],
    forecast: ForecastSpec,
    budget: Budget,
    sample_size: int,
    samples: dict[str, Any],
    regions: dict[str, RegionCalibration],
    search: SearchRecord | None,
) -> CalibrationFile:
    first = next(iter(statistics.values()))
    models, scheduler = identity
    return CalibrationFile(
        models=models,
        scheduler=scheduler,
        num_steps=first.num_steps or 1,
        strategy={"forecast": forecast.model_dump(mode="json")},
        budget=budget,
        regions=regions,
        samples={
            "rows": first.models[forecast.label].rows,
            "generations": first.generations,
            "sample_size": sample_size,
            **samples,
        },
        search=search,
    )
