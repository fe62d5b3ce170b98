"""Calibration's core: the error model, the solver, the probe fit, the file and the policies that read it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import cachekit
from cachekit import ConfigError, PolicyError
from cachekit.calibration.budget import Budget
from cachekit.calibration.calibrate import calibrate_model, uniform_steps
from cachekit.calibration.error_model import ErrorModel, error_matrix, history_steps
from cachekit.calibration.file import CalibrationFile
from cachekit.calibration.probe_fit import accumulated_drift, fit_probe
from cachekit.calibration.solver import best_schedules, solve
from cachekit.policies.remap import remap_steps
from cachekit.reuse.linear import LinearForecast
from cachekit.reuse.stored import StoredResult
from tests.models import MIDDLE, tiny_transformer

STEPS = 8
TINY = {**MIDDLE, "num_steps": STEPS}


@torch.no_grad()
def denoise(model: torch.nn.Module, seeds: range, rows: int = 2) -> None:
    """Bare-model generations: ``STEPS`` calls each, one per seed."""
    for seed in seeds:
        x = torch.randn(rows, 8, 4, generator=torch.Generator().manual_seed(seed))
        for step in range(STEPS):
            x = x - 0.1 * model(x, torch.tensor(1000.0 - 125.0 * step))


def brute_force_error(trajectory: torch.Tensor, previous: int | None, latest: int, served: int, linear: bool) -> float:
    """The mean relative L1 error of serving ``served`` from refreshes ``previous, latest``, computed by hand."""
    x = trajectory.double()
    value = x[latest]
    if linear and previous is not None:
        value = x[latest] + (served - latest) / (latest - previous) * (x[latest] - x[previous])
    scale = x.abs().mean(dim=(0, 2))
    return float(((value - x[served]).abs().mean(-1) / scale).mean())


@pytest.fixture(scope="module")
def trajectory() -> torch.Tensor:
    """A smooth random trajectory: ``(STEPS, rows, values)``."""
    generator = torch.Generator().manual_seed(3)
    t = torch.linspace(0, 1, STEPS)[:, None, None]
    a, b, c = (torch.randn(1, 3, 5, generator=generator) for _ in range(3))
    return a + b * t + c * t**2 + 0.05 * torch.randn(STEPS, 3, 5, generator=generator)


@pytest.mark.parametrize(("forecaster", "linear"), [(StoredResult, False), (LinearForecast, True)])
def test_the_error_model_matches_a_brute_force_computation(trajectory, forecaster, linear):
    model = ErrorModel(STEPS, forecaster)
    model.add(trajectory[:, :2], still(trajectory[:, :2]))
    model.add(trajectory[:, 2:], still(trajectory[:, 2:]))  # two generations: the running mean weights every row alike
    table = model.table
    assert model.rows == 3
    for previous, latest, served in [(None, 0, 5), (0, 1, 2), (2, 5, 7), (0, 6, 7), (3, 4, 6)]:
        row = STEPS if previous is None else previous
        parts = [trajectory[:, :2], trajectory[:, 2:]]
        expected = sum(brute_force_error(p, previous, latest, served, linear) * p.shape[1] for p in parts) / 3
        assert table[row, latest, served] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(table[STEPS, 3, 5]) and np.isnan(table[2, 5, 4])  # unreachable states, steps not after


def still(trajectory: torch.Tensor) -> torch.Tensor:
    """Probe drifts of a generation whose probe never changes: ``(steps, rows)`` zeros."""
    return torch.zeros(trajectory.shape[:2])


def test_the_trust_is_the_mean_relative_slope_of_segment_error_on_drift():
    generator = torch.Generator().manual_seed(5)
    rows = 24
    t = torch.linspace(0, 1, STEPS)[:, None, None]
    wobble = 0.5 + torch.rand(1, rows, 1, generator=generator)  # how much each row strays from a line
    trajectory = 1 + t + wobble * 0.2 * torch.sin(7 * t) * torch.randn(1, rows, 5, generator=generator)
    drifts = wobble[0, :, 0] * (1 + 0.3 * torch.rand(STEPS, rows, generator=generator))
    drifts[0] = float("nan")
    model = ErrorModel(STEPS, LinearForecast)
    model.add(trajectory[:, :10], drifts[:, :10])
    model.add(trajectory[:, 10:], drifts[:, 10:])
    schedule = (0, 3, 6)
    slopes = []
    for index, latest in enumerate(schedule):
        end = schedule[index + 1] if index + 1 < len(schedule) else STEPS
        forecaster = LinearForecast()
        for step in schedule[max(index - 1, 0) : index + 1]:
            forecaster.record(step, trajectory[step])
        scale = trajectory.abs().mean(dim=(0, 2))
        error = sum((forecaster.serve(j) - trajectory[j]).abs().mean(-1) / scale for j in range(latest + 1, end))
        drift = drifts[latest + 1 : end].sum(0)
        slopes.append(np.polyfit((drift / drift.mean()).numpy(), (error / error.mean()).numpy(), 1)[0])
    trust = model.trust_moments.trust(schedule)
    assert 0.0 < trust < 1.0  # the rows that stray more drift more, not in proportion
    assert trust == pytest.approx(float(np.clip(np.mean(slopes), 0, 1)), rel=1e-6)
    assert ErrorModel(STEPS, LinearForecast).trust_moments.trust(schedule) is None  # nothing recorded
    flat = ErrorModel(STEPS, LinearForecast)
    flat.add(trajectory, still(trajectory))
    assert flat.trust_moments.trust(schedule) is None  # a probe that never drifts predicts nothing


def test_higher_orders_see_the_refreshes_before_at_the_same_gap():
    assert history_steps(None, 0) == [0]
    assert history_steps(4, 7) == [1, 4, 7]
    assert history_steps(10, 14) == [2, 6, 10, 14]


def _simulated(trajectory: torch.Tensor, steps: tuple[int, ...], objective: str) -> float:
    """The error of a schedule driven through the real forecaster, step by step."""
    forecaster = LinearForecast()
    scale = trajectory.abs().mean(dim=(0, 2))
    errors = []
    for step in range(STEPS):
        if step in steps:
            forecaster.record(step, trajectory[step])
        else:
            errors.append(float(((forecaster.serve(step) - trajectory[step]).abs().mean(-1) / scale).mean()))
    return sum(errors) if objective == "total" else max(errors, default=0.0)


@pytest.mark.parametrize("objective", ["total", "worst"])
def test_the_dynamic_programme_finds_the_best_schedule_of_every_size(trajectory, objective):
    model = ErrorModel(STEPS, LinearForecast)
    model.add(trajectory, still(trajectory))
    solutions = best_schedules(model.table, objective, STEPS)
    for refreshes, solution in enumerate(solutions, start=1):
        options = [(0, *rest) for rest in itertools.combinations(range(1, STEPS), refreshes - 1)]
        best = min(_simulated(trajectory, steps, objective) for steps in options)
        assert len(solution.steps) == refreshes and solution.steps[0] == 0
        assert solution.cost(objective) == pytest.approx(best, rel=1e-5, abs=1e-9)
        assert _simulated(trajectory, solution.steps, objective) == pytest.approx(best, rel=1e-5, abs=1e-9)
    assert solutions[-1].total == 0.0


def test_an_error_budget_takes_the_fewest_refreshes_within_it(trajectory):
    model = ErrorModel(STEPS, StoredResult)
    model.add(trajectory, still(trajectory))
    table = model.table
    costs = [solution.total for solution in best_schedules(table, "total", STEPS)]
    budget = (costs[2] + costs[1]) / 2  # between the best of 2 and of 3 refreshes
    assert costs[2] <= budget < costs[1]
    assert len(solve(table, Budget(error=budget)).steps) == 3
    assert len(solve(table, Budget(refreshes=4)).steps) == 4
    assert solve(table, Budget(error=1e-12)).steps == tuple(range(STEPS))


def test_a_budget_is_one_of_two_forms():
    with pytest.raises(ValueError, match="exactly one of 'refreshes'"):
        Budget(refreshes=3, error=1.0)
    with pytest.raises(ValueError, match="exactly one of 'refreshes'"):
        Budget()


def test_uniform_steps_match_the_uniform_policy():
    assert uniform_steps(50, 5) == (0, 10, 20, 30, 40)
    assert list(uniform_steps(50, 17)) == cachekit.UniformPolicy(interval=3).refresh_steps(50)


def test_the_probe_fit_recovers_a_power_law():
    drift = np.linspace(0.01, 1.0, 40)
    fit = fit_probe("entry_input", drift, 0.3 * drift**1.7)
    assert fit.scale == pytest.approx(0.3) and fit.power == pytest.approx(1.7) and fit.r2 == pytest.approx(1.0)
    assert fit.threshold(fit.error(0.25)) == pytest.approx(0.25)
    assert accumulated_drift(np.array([np.nan, 1.0, 2.0, 3.0]))[1, 3] == pytest.approx(5.0)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny transformer calibrated for 'none' and 'linear' at 3 refreshes of 8 steps, files saved."""
    torch.set_num_threads(1)
    model = tiny_transformer()
    files = calibrate_model(
        model, lambda: denoise(model, range(2)), {"refreshes": 3}, TINY, forecasts=["none", "linear"], sample_size=4096
    )
    folder = tmp_path_factory.mktemp("calibration")
    return model, {name: file.save(folder / f"{name}.json") for name, file in files.items()}, files


def test_recorded_errors_match_errors_computed_from_the_full_region_result(calibrated):
    model, _, files = calibrated
    entries: list[torch.Tensor] = []
    residuals: list[torch.Tensor] = []
    entry = model.blocks[1].register_forward_pre_hook(lambda m, args: entries.append(args[0]))
    exit_ = model.blocks[4].register_forward_hook(lambda m, args, out: residuals.append(out - entries[-1]))
    try:
        trajectories = []
        for seed in range(2):
            residuals.clear()
            denoise(model, range(seed, seed + 1))
            trajectories.append(torch.stack([residual.flatten(1) for residual in residuals]))
    finally:
        entry.remove()
        exit_.remove()
    errors = files["none"].regions["middle"].errors
    for latest, served in [(0, 3), (2, 7), (5, 6)]:
        expected = np.mean([brute_force_error(t, None, latest, served, linear=False) for t in trajectories])
        assert errors[latest][served] == pytest.approx(expected, rel=1e-4)


def test_the_file_round_trips_and_says_what_it_was_measured_on(calibrated):
    _, paths, files = calibrated
    loaded = CalibrationFile.load(paths["linear"])
    assert loaded == files["linear"]
    assert loaded.models["model"].class_name == "TinyTransformer" and loaded.num_steps == STEPS
    assert loaded.strategy == {"forecast": "linear"} and loaded.budget == Budget(refreshes=3)
    assert loaded.samples["rows"] == 4 and loaded.samples["generations"] == 2
    region = loaded.regions["middle"]
    assert len(region.schedule.steps) == 3 and region.schedule.steps[0] == 0
    assert region.schedule.total_error <= region.uniform.total_error + 1e-12
    assert len(region.errors) == STEPS and region.errors[3][2] is None
    assert error_matrix(np.zeros((STEPS + 1, STEPS, STEPS)))[0, 1] == 0.0


def test_a_file_that_is_not_a_calibration_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read calibration file"):
        CalibrationFile.load(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"format": "something"}')
    with pytest.raises(ConfigError, match="is not a cachekit calibration file"):
        CalibrationFile.load(other)


def _refresh_steps(model, config) -> list[int]:
    with cachekit.cached(model, config) as handle:
        denoise(model, range(1))
        return handle.stats.refresh_steps("middle")


def test_a_calibrated_policy_refreshes_at_the_chosen_steps(calibrated):
    model, paths, files = calibrated
    config = {**TINY, "forecast": "linear", "policy": {"kind": "calibrated", "file": str(paths["linear"])}}
    chosen = list(files["linear"].regions["middle"].schedule.steps)
    assert _refresh_steps(model, config) == chosen
    with cachekit.cached(model, config) as handle:
        assert handle.views["middle"].policy.refresh_steps(STEPS) == chosen
    with pytest.raises(PolicyError, match="only once installed"):
        cachekit.CalibratedPolicy(file=str(paths["linear"])).refresh_steps(STEPS)


def test_a_calibrated_file_on_another_model_region_set_forecaster_or_step_count_fails(calibrated):
    model, paths, _ = calibrated
    policy = {"kind": "calibrated", "file": str(paths["none"])}
    with pytest.raises(ConfigError, match=r"is for a TinyTransformer \(config \w+\), and this 'model' is a"):
        cachekit.enable(tiny_transformer(width=8), {**TINY, "policy": policy})
    other = {"declare": [{"name": "late", "entry": "blocks.5"}], "num_steps": STEPS}
    with pytest.raises(ConfigError, match=r"for regions 'middle' of 'model', and this config installs 'late'"):
        cachekit.enable(model, {**other, "policy": policy})
    with pytest.raises(ConfigError, match="chose its steps for forecast 'none'.*set forecast: none"):
        cachekit.enable(model, {**TINY, "forecast": "linear", "policy": policy})
    short = {**TINY, "num_steps": 6, "policy": policy}
    with cachekit.cached(model, short), pytest.raises(PolicyError, match="is for 8 steps, and this generation runs 6"):
        model(torch.randn(1, 8, 4), torch.tensor(1.0))


def test_an_adaptive_policy_anchors_on_a_calibration_file(calibrated):
    model, paths, files = calibrated
    chosen = list(files["linear"].regions["middle"].schedule.steps)
    policy = {"kind": "adaptive", "anchor": str(paths["linear"]), "memory": 1}  # memory 1: a steady drift
    config = {**TINY, "forecast": "linear", "policy": policy}
    assert _refresh_steps(model, config) == chosen
    with cachekit.cached(model, config) as handle:
        bound = handle.views["middle"].policy
        assert bound.anchor == tuple(chosen) and bound.refreshes == len(chosen)
    with pytest.raises(ConfigError, match="chose its steps for forecast 'linear'.*set forecast: linear"):
        cachekit.enable(model, {**TINY, "forecast": "none", "policy": policy})
    short = {**TINY, "num_steps": 6, "forecast": "linear", "policy": policy}
    with (
        cachekit.cached(model, short),
        pytest.raises(PolicyError, match=r"adaptive anchor, calibration .* is for 8 steps, and this generation runs 6"),
    ):
        model(torch.randn(1, 8, 4), torch.tensor(1.0))
    with pytest.raises(PolicyError, match="reads it once installed"):
        cachekit.AdaptivePolicy(anchor=str(paths["linear"])).should_refresh(cachekit.StepInfo(1, 8, None), None)


def test_an_adaptive_policy_reads_the_drift_trust_its_calibration_file_fitted(calibrated, tmp_path):
    model, paths, files = calibrated
    fitted = files["linear"].regions["middle"].drift_trust
    assert fitted is not None and fitted.probe == "entry_input" and 0.0 <= fitted.trust <= 1.0
    anchored = {"kind": "adaptive", "anchor": str(paths["linear"])}
    for policy, trust in [(anchored, fitted.trust), ({**anchored, "trust": 0.5}, 0.5)]:
        with cachekit.cached(model, {**TINY, "forecast": "linear", "policy": policy}) as handle:
            assert handle.views["middle"].policy.trust == trust
    region = files["linear"].regions["middle"]
    residual = region.model_copy(update={"drift_trust": fitted.model_copy(update={"probe": "entry_residual"})})
    other = files["linear"].model_copy(update={"regions": {"middle": residual}}).save(tmp_path / "residual.json")
    policy = {**anchored, "anchor": str(other)}
    with pytest.raises(ConfigError, match=r"fitted the drift's trust on probe 'entry_residual'.*probes 'entry_input'"):
        cachekit.enable(model, {**TINY, "forecast": "linear", "policy": policy})
    with cachekit.cached(model, {**TINY, "forecast": "linear", "policy": {**policy, "trust": 1.0}}) as handle:
        assert handle.views["middle"].policy.trust == 1.0


def test_remap_maps_an_adaptive_policys_file_anchor_onto_another_step_count(calibrated):
    model, paths, files = calibrated
    remapped = remap_steps(files["linear"].regions["middle"].schedule.steps, STEPS, 16)
    policy = {"kind": "adaptive", "anchor": str(paths["linear"]), "memory": 1, "remap": True}
    config = {**TINY, "num_steps": 16, "forecast": "linear", "policy": policy}
    with cachekit.cached(model, config) as handle:
        x = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
        for step in range(16):
            x = x - 0.1 * model(x, torch.tensor(1000.0 - 62.5 * step))
        assert handle.stats.refresh_steps("middle") == remapped
    with pytest.raises(ConfigError, match="'remap' maps a calibration file's anchor.*give the file as the anchor"):
        cachekit.load_config({"policy": {"kind": "adaptive", "anchor": [0, 3], "remap": True}})


def test_remap_maps_a_calibrated_schedule_onto_another_step_count(calibrated):
    model, paths, files = calibrated
    steps = files["none"].regions["middle"].schedule.steps
    policy = {"kind": "calibrated", "file": str(paths["none"]), "remap": True}
    with cachekit.cached(model, {**TINY, "num_steps": 16, "policy": policy}) as handle:
        for step in range(16):
            model(torch.randn(1, 8, 4), torch.tensor(float(1000 - step)))
        assert handle.stats.refresh_steps("middle") == remap_steps(steps, STEPS, 16)


def test_remapping_keeps_each_refresh_at_its_place_in_time_and_the_count():
    assert remap_steps((0, 10, 20, 30, 40), 50, 20) == [0, 4, 8, 12, 16]
    assert remap_steps((0, 10, 20, 30, 40), 50, 100) == [0, 20, 40, 60, 80]
    assert remap_steps((0, 1, 2, 3), 10, 3) == [0, 1, 2]  # more refreshes than steps: one each
    assert remap_steps((0, 8, 9), 10, 4) == [0, 2, 3]  # crowded at the end: pulled back, still three
    assert remap_steps((0, 2, 3), 10, 4) == [0, 1, 2]


def test_a_schedule_runs_the_region_exactly_at_its_steps():
    model = tiny_transformer()
    calls = []
    hook = model.blocks[2].mlp.register_forward_hook(lambda *_: calls.append(1))  # runs only when computed
    try:
        policy = {"kind": "schedule", "steps": [3, 0, 5]}
        assert _refresh_steps(model, {**TINY, "policy": policy}) == [0, 3, 5]
    finally:
        hook.remove()
    assert len(calls) == 3
    with pytest.raises(ConfigError, match="past the last step"):
        cachekit.enable(model, {**TINY, "policy": {"kind": "schedule", "steps": [0, 9], "num_steps": 8}})
    five = {**TINY, "policy": {"kind": "schedule", "steps": [0, 4], "num_steps": 5}}
    with cachekit.cached(model, five), pytest.raises(PolicyError, match="the schedule is for 5 steps, and this gen"):
        model(torch.randn(1, 8, 4), torch.tensor(1.0))


def test_similarity_can_take_an_error_budget_through_the_probe_fit(calibrated):
    model, paths, files = calibrated
    fit = files["none"].regions["middle"].probe_fit
    assert fit is not None and fit.probe == "entry_input"
    budget = fit.error(0.05)
    policy = {"kind": "similarity", "error_budget": budget, "fit": str(paths["none"])}
    with cachekit.cached(model, {**TINY, "policy": policy}) as handle:
        assert handle.views["middle"].policy.threshold == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="together, or neither"):
        cachekit.enable(model, {**TINY, "policy": {"kind": "similarity", "error_budget": 0.1}})
    with pytest.raises(ConfigError, match="reads probe 'entry_residual'"):
        cachekit.enable(model, {**TINY, "policy": {**policy, "probe": "entry_residual"}})
    plain = cachekit.enable(model, {**TINY, "policy": {"kind": "similarity", "threshold": 0.2}})
    assert plain.views["middle"].policy.threshold == 0.2
    plain.disable()
