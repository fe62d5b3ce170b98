"""The forecaster family: Taylor orders 1-3 on Newton divided differences, Hermite, their configs and bytes."""

from __future__ import annotations

import json
import math
from collections import OrderedDict, namedtuple

import pytest
import torch

import cachekit
from cachekit import ConfigError, load_config
from cachekit.experiments import load_experiment
from cachekit.reuse.hermite import HermiteForecast
from cachekit.reuse.linear import LinearForecast
from cachekit.reuse.newton import weights
from cachekit.reuse.taylor import TaylorForecast
from tests.models import tiny_transformer

STEPS = (0, 3, 4, 9)  # unequal gaps, as non-uniform and adaptive schedules refresh


COEFFICIENTS = (2.0, -0.3, 0.05, -0.004)


def polynomial(degree: int):
    """``x -> 2 - 0.3 x + 0.05 x² - 0.004 x³`` cut after the power ``degree``."""
    return lambda x: sum(c * x**power for power, c in enumerate(COEFFICIENTS[: degree + 1]))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_taylor_is_exact_on_polynomials_up_to_its_order_at_unequal_gaps(order, degree):
    f = polynomial(degree)
    forecaster = TaylorForecast(order=order)
    for step in STEPS:
        forecaster.record(step, torch.full((2, 3), f(step), dtype=torch.float64))
    served = forecaster.serve(13)
    if degree <= order:
        torch.testing.assert_close(served, torch.full((2, 3), f(13), dtype=torch.float64), rtol=1e-12, atol=1e-12)
    else:
        assert not torch.allclose(served, torch.full((2, 3), f(13), dtype=torch.float64), atol=1e-6)


def test_the_weights_are_the_interpolating_polynomials_and_rows_use_the_nodes_they_have():
    nodes = torch.tensor([[9.0, 4.0, 3.0, 0.0], [9.0, 4.0, math.nan, math.nan]], dtype=torch.float64)
    given = weights(nodes, 13.0)
    assert given[0].tolist() == pytest.approx([lagrange(j, nodes[0].tolist(), 13.0) for j in range(4)])
    assert given[1].tolist() == pytest.approx([1 + 4 / 5, -4 / 5, 0.0, 0.0])  # a line through its two


def lagrange(j: int, xs: list[float], s: float) -> float:
    return math.prod((s - xs[m]) / (xs[j] - xs[m]) for m in range(len(xs)) if m != j)


def test_fewer_refreshes_than_order_plus_one_use_the_highest_order_there_is():
    forecaster = TaylorForecast(order=3)
    forecaster.record(0, torch.tensor([1.0]))
    assert torch.equal(forecaster.serve(2), torch.tensor([1.0]))  # one refresh: served as stored
    forecaster.record(4, torch.tensor([3.0]))
    torch.testing.assert_close(forecaster.serve(6), torch.tensor([4.0]))  # two: the line
    forecaster.record(8, torch.tensor([3.0]))
    torch.testing.assert_close(forecaster.serve(10), torch.tensor([2.25]))  # three: the parabola 1 + 3x/4 - x²/16


def test_linear_is_taylor_order_one_and_the_lerp_it_always_was():
    f0, f1 = torch.randn(4, 8), torch.randn(4, 8)
    for s0, s1, step in [(0, 10, 13), (3, 8, 9), (0, 4, 7), (21, 34, 40)]:
        linear, taylor = LinearForecast(), TaylorForecast(order=1)
        for forecaster in (linear, taylor):
            forecaster.record(s0, f0)
            forecaster.record(s1, f1)
        before = torch.lerp(f0, f1, 1.0 + (step - s1) / (s1 - s0))  # forecast: linear before the family
        assert torch.equal(linear.serve(step), before) and torch.equal(taylor.serve(step), before)


def test_a_second_refresh_at_the_same_step_replaces_the_first():
    forecaster = TaylorForecast(order=2)
    forecaster.record(0, torch.tensor([0.0]))
    forecaster.record(2, torch.tensor([5.0]))
    forecaster.record(2, torch.tensor([2.0]))  # a second call of step 2
    torch.testing.assert_close(forecaster.serve(3), torch.tensor([3.0]))


@pytest.mark.parametrize("make", [lambda: TaylorForecast(order=3), lambda: HermiteForecast(order=2, scale=0.5)])
def test_each_row_keeps_its_own_history(make):
    """A batch [A, B] whose rows refresh at different steps is served what A and B get alone."""
    a, b = (torch.randn(5, 3, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
    refreshes = {0: "AB", 3: "A", 5: "B", 7: "AB", 9: "A"}
    batch, alone = make(), {"A": make(), "B": make()}
    for step, who in refreshes.items():
        value = torch.stack([a[step % 5] * (1 + step), b[step % 5] * (2 - step)])
        rows = None if who == "AB" else torch.tensor(["A" in who, "B" in who])
        batch.record(step, value, rows)
        for index, name in enumerate("AB"):
            if name in who:
                alone[name].record(step, value[index : index + 1])
    for step in (10, 12):
        served = batch.serve(step)
        torch.testing.assert_close(served[0:1], alone["A"].serve(step), rtol=0, atol=1e-6)
        torch.testing.assert_close(served[1:2], alone["B"].serve(step), rtol=0, atol=1e-6)


def test_forecasts_walk_tuples_dicts_and_namedtuples_and_leave_what_they_cannot_forecast():
    pair = namedtuple("Pair", "first second")
    forecaster = TaylorForecast(order=2)
    for step, scale in ((0, 1.0), (1, 2.0), (2, 3.0)):
        value = torch.tensor([scale, 2 * scale])
        forecaster.record(step, (value, {"a": value}, None, torch.tensor([7]), pair(value, None), OrderedDict(a=value)))
    served = forecaster.serve(4)
    expected = torch.tensor([5.0, 10.0])
    for leaf in (served[0], served[1]["a"], served[4].first, served[5]["a"]):
        torch.testing.assert_close(leaf, expected)
    assert served[2] is None and torch.equal(served[3], torch.tensor([7]))
    assert isinstance(served[4], pair) and served[4].second is None and type(served[5]) is OrderedDict


def test_hermite_damps_a_long_extrapolation_that_taylor_runs_away_with():
    taylor, hermite = TaylorForecast(order=3), HermiteForecast(order=3, scale=0.5)
    for step, value in ((0, 0.0), (10, 1.0), (20, 0.0), (30, 1.0)):  # a zigzag: cubic terms dominate
        for forecaster in (taylor, hermite):
            forecaster.record(step, torch.tensor([value]))
    assert abs(float(hermite.serve(39)) - 1.0) < abs(float(taylor.serve(39)) - 1.0) / 2


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".yaml", "forecast: {name: taylor, order: 2}\n"),
        (".toml", '[forecast]\nname = "taylor"\norder = 2\n'),
        (".json", json.dumps({"forecast": {"name": "taylor", "order": 2}})),
    ],
)
def test_forecast_with_parameters_from_files(tmp_path, suffix, text):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    config = load_config(path)
    assert config.forecast.name == "taylor" and config.forecast.options.order == 2
    assert config.forecast.label == "taylor2" and config == load_config({"forecast": {"name": "taylor", "order": 2}})
    assert config.model_dump()["forecast"] == {"name": "taylor", "order": 2}
    assert load_config(config.model_dump()) == config


def test_forecast_names_and_defaults():
    assert load_config({"forecast": "linear"}).forecast.label == "linear"
    assert load_config({}).model_dump()["forecast"] == "none"
    assert load_config({"forecast": "taylor"}).forecast.label == "taylor2"  # order 2 by default
    hermite = load_config({"forecast": {"name": "hermite", "order": 3, "scale": 0.6}}).forecast
    assert hermite.label == "hermite3(scale=0.6)" and isinstance(hermite.factory()(), HermiteForecast)


@pytest.mark.parametrize(
    "forecast,message",
    [
        (
            {"name": "taylor", "order": 4},
            r"forecast: forecaster 'taylor': order: Input should be less than or equal to 3",
        ),
        ({"name": "taylor", "order": 0}, r"order: Input should be greater than or equal to 1 \(got 0\)"),
        ({"name": "taylor", "ordr": 2}, r"no parameter 'ordr' \(did you mean 'order'\?\); its parameters: 'order'"),
        ({"name": "linear", "order": 2}, r"forecaster 'linear' has no parameter 'order'; it takes no parameters"),
        ({"order": 2}, r"a forecast mapping needs 'name'"),
        ({"name": "hermite", "scale": 0.9}, r"scale: Input should be less than or equal to 0.707"),
        ({"name": "taylr"}, r"unknown forecaster 'taylr' \(did you mean 'taylor'\?\)"),
    ],
)
def test_bad_forecast_parameters_are_clear_errors(forecast, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"forecast": forecast})


def test_experiment_entries_take_a_forecast_mapping_and_name_it_by_its_label():
    base = {"model": {"builder": "tiny-unet"}, "sampling": {"steps": 4, "num_samples": 1}}
    forecasts = ["none", {"name": "taylor", "order": 3}]
    entries = [
        {"interval": 3, "branch": 0, "grid": {"forecast": forecasts}},
        {"name": "mine", "grid": {"forecast": forecasts}},
    ]
    settings = load_experiment({**base, "policies": entries}).settings
    assert [s.name for s in settings] == [
        "uniform interval=3 @branch0",
        "uniform interval=3 forecast=taylor3 @branch0",
        "mine[forecast=none]",
        "mine[forecast=taylor3]",
    ]
    assert settings[1].cache.forecast.label == "taylor3"


REGION = {"declare": [{"name": "m", "entry": "blocks.1", "exit": "blocks.4"}]}


@torch.no_grad()
def denoise(model, steps: int = 9) -> torch.Tensor:
    sample = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
    for index in range(steps):
        sample = sample - 0.1 * model(sample, torch.tensor(900.0 - 90 * index))
    return sample


@torch.no_grad()
def denoise_by_hand(model, order: int, steps: int = 9) -> torch.Tensor:
    """Blocks 1-4 refreshed every second step; between, the Lagrange polynomial through the last
    order + 1 residuals (written out here, apart from the library's divided differences)."""
    sample = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
    history: list[tuple[int, torch.Tensor]] = []
    for index in range(steps):
        c = model.time(torch.tensor([[(900.0 - 90 * index) / 1000.0]]))[:, None, :]
        x = model.blocks[0](model.embed(sample), c)
        if index % 2 == 0:
            entry = x
            for block in model.blocks[1:5]:
                x = block(x, c)
            history = [(index, x - entry), *history][: order + 1]
        else:
            xs = [step for step, _ in history]
            x = x + sum(lagrange(j, xs, index) * value for j, (_, value) in enumerate(history))
        x = model.blocks[5](x, c)
        sample = sample - 0.1 * model.out(x)
    return sample


@pytest.mark.parametrize("order", [2, 3])
def test_taylor_end_to_end_equals_the_hand_composed_polynomial_and_keeps_order_plus_one_results(order):
    model = tiny_transformer()
    config = {**REGION, "policy": {"kind": "uniform", "interval": 2}, "forecast": {"name": "taylor", "order": order}}
    with cachekit.cached(model, config) as handle:
        cached = denoise(model)
        held = handle.stats["m"].held_bytes()
    torch.testing.assert_close(cached, denoise_by_hand(model, order), rtol=0, atol=1e-5)
    residual_bytes = 2 * 8 * 16 * 4  # batch 2, 8 tokens, width 16, float32
    assert held == {"TaylorForecast": (order + 1) * residual_bytes}
    assert handle.stats.peak_bytes == (order + 1) * residual_bytes
    with cachekit.cached(model, {**REGION, "policy": {"kind": "uniform", "interval": 1}, "forecast": "taylor"}):
        always = denoise(model)
    assert torch.equal(always, denoise(model))  # refreshing every step is the uncached model, bit for bit
    assert not torch.allclose(cached, always, atol=1e-4)  # the reuse steps were served forecasts
