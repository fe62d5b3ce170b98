"""Forecasting reuse: reuse steps serve the linear extrapolation of the last two refreshes."""

from __future__ import annotations

import pytest
import torch

import cachekit
from cachekit import ConfigError
from cachekit.experiments import load_experiment
from tests.models import tiny_transformer

T = (900, 800, 700, 600, 500, 400, 300)
REFRESH_STEPS = (0, 3, 6)  # uniform interval 3 over the 7 steps of T


@torch.no_grad()
def run(model) -> torch.Tensor:
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    for t in T:
        sample = sample - 0.1 * model(sample, torch.tensor(float(t)))
    return sample


@torch.no_grad()
def run_by_hand(model, mode: str) -> torch.Tensor:
    """Blocks 1-4 refreshed at 0, 3, 6; in between, the stored result (one refresh so far) or
    its linear extrapolation from the last two refreshes."""
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    history: list[tuple[int, torch.Tensor]] = []
    for index, t in enumerate(T):
        c = model.time(torch.tensor([[t / 1000.0]]))[:, None, :]
        x = model.blocks[0](model.embed(sample), c)
        if index in REFRESH_STEPS:
            entry = x
            for block in model.blocks[1:5]:
                x = block(x, c)
            history = [*history[-1:], (index, x - entry if mode == "residual" else x)]
        else:
            (s1, f1), served = history[-1], history[-1][1]
            if len(history) == 2:
                (s0, f0) = history[0]
                served = f1 + (index - s1) / (s1 - s0) * (f1 - f0)
            x = x + served if mode == "residual" else served
        x = model.blocks[5](x, c)
        sample = sample - 0.1 * model.out(x)
    return sample


def config(mode: str, forecast: str = "linear") -> dict:
    return {
        "declare": [{"name": "m", "entry": "blocks.1", "exit": "blocks.4", "mode": mode}],
        "policy": {"kind": "uniform", "interval": 3},
        "forecast": forecast,
    }


@pytest.mark.parametrize("mode", ["residual", "output"])
def test_linear_forecast_computes_exactly_the_hand_composed_reference(mode):
    model = tiny_transformer()
    with cachekit.cached(model, config(mode)) as handle:
        cached = run(model)
    assert handle.stats.refresh_steps("m") == list(REFRESH_STEPS)
    torch.testing.assert_close(cached, run_by_hand(model, mode), rtol=0, atol=1e-6)
    with cachekit.cached(model, config(mode, forecast="none")):
        plain = run(model)
    assert not torch.allclose(cached, plain, atol=1e-4)  # steps 4 and 5 were served differently


def test_forecasting_skips_the_same_compute_and_disable_restores_the_model():
    model = tiny_transformer()
    uncached = run(model)
    calls = []
    model.blocks[2].mlp.register_forward_hook(lambda *_: calls.append(1))  # runs only when block 2 computes
    with cachekit.cached(model, config("output")):
        run(model)
        run(model)  # a second generation starts from an empty history
        assert len(calls) == 2 * len(REFRESH_STEPS)
    assert torch.equal(run(model), uncached)


def test_a_new_generation_does_not_extrapolate_from_the_previous_one():
    model = tiny_transformer()
    with cachekit.cached(model, config("output")):
        first = run(model)
        second = run(model)
    assert torch.equal(first, second)


def test_a_bad_forecast_names_the_allowed_values():
    with pytest.raises(
        ConfigError,
        match=r"forecast: unknown forecaster 'quadratic'; known forecasters: 'hermite', 'linear', 'none', 'taylor'",
    ):
        cachekit.load_config({"forecast": "quadratic"})


def test_experiment_entries_take_forecast_and_name_it():
    base = {"model": {"builder": "tiny-unet"}, "sampling": {"steps": 4, "num_samples": 1}}
    entry = {"interval": 3, "branch": 0, "grid": {"forecast": ["none", "linear"]}}
    settings = load_experiment({**base, "policies": [entry]}).settings
    assert [s.name for s in settings] == ["uniform interval=3 @branch0", "uniform interval=3 forecast=linear @branch0"]
    assert [s.cache.forecast.label for s in settings] == ["none", "linear"]
    with pytest.raises(ConfigError, match="'cache' may not set 'forecast'"):
        load_experiment({**base, "policies": [{"interval": 3, "cache": {"forecast": "linear"}}]})
