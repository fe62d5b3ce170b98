"""The schedule search: coordinate moves on a known cost, the output error, and a search inside calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import cachekit
from cachekit import CachekitError
from cachekit.calibration.calibrate import calibrate_model
from cachekit.calibration.output_error import OutputError, output_values
from cachekit.calibration.search import Search, search_schedules
from tests.models import MIDDLE, tiny_transformer

STEPS = 12
TINY = {**MIDDLE, "num_steps": STEPS}


class Counted:
    """A cost with its minimum at ``target`` (squared distance per refresh), counting its calls."""

    def __init__(self, target: dict[str, tuple[int, ...]]):
        self.target = target
        self.calls: list[dict[str, tuple[int, ...]]] = []

    def __call__(self, schedules: dict[str, tuple[int, ...]]) -> float:
        self.calls.append(schedules)
        return float(
            sum(
                (a - b) ** 2 for name, steps in schedules.items() for a, b in zip(steps, self.target[name], strict=True)
            )
        )


def test_the_search_walks_every_region_to_the_least_cost():
    cost = Counted({"a": (0, 3, 9, 15), "b": (0, 18)})
    start = {"a": (0, 5, 6, 12), "b": (0, 10)}
    result = search_schedules(start, cost, num_steps=20, search=Search(evaluations=200, radius=3))
    assert result.schedules == {"a": (0, 3, 9, 15), "b": (0, 18)}
    assert result.cost == 0.0 and result.start_cost == 4 + 9 + 9 + 64 and cost.calls[0] == start
    assert result.evaluations == len(cost.calls)
    assert len({tuple(sorted(call.items())) for call in cost.calls}) == len(cost.calls)  # never one twice


def test_moves_keep_step_zero_the_order_and_the_step_range():
    cost = Counted({"a": (0, 1, 2, 19)})
    search_schedules({"a": (0, 4, 8, 16)}, cost, num_steps=20, search=Search(radius=5))
    for call in cost.calls:
        steps = call["a"]
        assert steps[0] == 0 and list(steps) == sorted(set(steps)) and steps[-1] < 20 and len(steps) == 4


def test_the_evaluations_bound_the_runs():
    cost = Counted({"a": (0, 19)})
    result = search_schedules({"a": (0, 2)}, cost, num_steps=20, search=Search(evaluations=5, radius=1))
    assert len(cost.calls) == result.evaluations == 5
    assert result.schedules == {"a": (0, 5)}  # one try down, then three moves up (tries already made are skipped)
    alone = Counted({"a": (0, 19)})
    assert search_schedules({"a": (0, 2)}, alone, 20, Search(evaluations=1)).schedules == {"a": (0, 2)}
    assert len(alone.calls) == 1


def test_search_settings_are_checked():
    with pytest.raises(ValidationError, match="evaluations"):
        Search(evaluations=0)
    with pytest.raises(ValidationError, match="radius"):
        Search.model_validate({"radius": 0})
    with pytest.raises(ValidationError, match="extra"):
        Search.model_validate({"rounds": 3})


def test_the_output_error_is_relative_and_reads_containers():
    reference = {"images": torch.ones(2, 3), "latents": [np.full(4, 2.0)], "steps": 50}
    measure = OutputError(reference)
    assert measure(reference) == 0.0
    moved = {"images": torch.ones(2, 3) * 1.1, "latents": [np.full(4, 2.0)], "steps": 50}
    assert measure(moved) == pytest.approx(6 * 0.01 / (6 + 16))
    assert [value.dtype for value in output_values(reference)] == [torch.float64, torch.float64]
    with pytest.raises(CachekitError, match="shapes"):
        measure({"images": torch.ones(3, 3), "latents": [np.full(4, 2.0)]})
    with pytest.raises(CachekitError, match="output_type"):
        OutputError([torch.arange(3), "a picture"])
    with pytest.raises(CachekitError, match="seed every generator"):
        measure.check_deterministic(moved)


@torch.no_grad()
def generate(model: torch.nn.Module, seeds: range = range(3)) -> list[torch.Tensor]:
    """Bare-model generations of ``STEPS`` calls, one per seed; returns each final sample."""
    outputs = []
    for seed in seeds:
        x = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(seed))
        for step in range(STEPS):
            x = x - 0.1 * model(x, torch.tensor(1000.0 - 80.0 * step))
        outputs.append(x)
    return outputs


@pytest.fixture(scope="module")
def searched():
    torch.set_num_threads(1)
    model = tiny_transformer()
    files = calibrate_model(
        model, lambda: generate(model), {"refreshes": 3}, TINY, forecasts=["none", "linear"], search={"radius": 3}
    )
    return model, files


def test_a_calibration_search_lowers_the_output_error_and_records_it(searched):
    model, files = searched
    reference = generate(model)
    for label, file in files.items():
        record = file.search
        assert record is not None and record.radius == 3 and 1 <= record.evaluations <= 100
        assert record.output_error <= record.start_output_error
        region = next(iter(file.regions.values()))
        assert len(region.schedule.steps) == 3 and region.schedule.steps[0] == 0
        if region.model_schedule is not None:
            assert region.model_schedule.steps != region.schedule.steps
            assert record.output_error < record.start_output_error
        handle = cachekit.enable(
            model, {**TINY, "policy": {"kind": "schedule", "steps": list(region.schedule.steps)}, "forecast": label}
        )
        try:
            cached = generate(model)
        finally:
            handle.disable()
        assert OutputError(reference)(cached) == pytest.approx(record.output_error, rel=1e-9), label
    assert any(file.regions[next(iter(file.regions))].model_schedule is not None for file in files.values())


def test_a_file_with_a_search_loads_and_serves_its_schedule(searched, tmp_path):
    model, files = searched
    path = files["linear"].save(tmp_path / "searched.json")
    loaded = cachekit.calibration.file.CalibrationFile.load(path)
    assert loaded == files["linear"]
    handle = cachekit.enable(model, {**TINY, "policy": {"kind": "calibrated", "file": str(path)}, "forecast": "linear"})
    try:
        generate(model, range(1))
        stats = next(iter(handle.stats.regions.values()))
        assert stats.refreshes == len(loaded.regions[next(iter(loaded.regions))].schedule.steps)
    finally:
        handle.disable()


def test_a_search_refuses_a_generate_that_samples_new_noise():
    model = tiny_transformer()
    calls = iter(range(100))

    def unseeded() -> list[torch.Tensor]:
        return generate(model, range(next(calls), next(calls) + 1))

    with pytest.raises(CachekitError, match="different outputs on two uncached runs"):
        calibrate_model(model, unseeded, {"refreshes": 3}, TINY, search={})
    with pytest.raises(CachekitError, match="returned no floating-point"):
        calibrate_model(model, lambda: generate(model) and None, {"refreshes": 3}, TINY, search={})


def test_a_search_moves_each_region_of_several_on_its_own():
    torch.set_num_threads(1)
    model = tiny_transformer()
    two = {
        "declare": [
            {"name": "low", "entry": "blocks.1", "exit": "blocks.2"},
            {"name": "high", "entry": "blocks.3", "exit": "blocks.4"},
        ],
        "num_steps": STEPS,
    }
    (file,) = calibrate_model(
        model, lambda: generate(model), {"refreshes": 3}, two, forecasts=["linear"], search={}
    ).values()
    assert set(file.regions) == {"low", "high"} and file.search is not None
    assert all(region.model_schedule is not None for region in file.regions.values())  # both moved
    schedules = {name: list(region.schedule.steps) for name, region in file.regions.items()}
    policies = {name: {"kind": "schedule", "steps": steps} for name, steps in schedules.items()}
    reference = generate(model)
    config = {**two, "policy": {"kind": "uniform", "interval": 1}, "region_policies": policies, "forecast": "linear"}
    with cachekit.cached(model, config) as handle:
        cached = generate(model, range(1))
        assert {name: handle.stats.refresh_steps(name) for name in schedules} == schedules
        cached = generate(model)
    assert OutputError(reference)(cached) == pytest.approx(file.search.output_error, rel=1e-9)
