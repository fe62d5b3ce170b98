"""Only what live code reads is forecast: the exit, and replayed inner outputs a live module reads."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import BaseTorchFunctionMode, _get_current_function_mode, _get_current_function_mode_stack

import cachekit
from cachekit.engine.readers import LiveReaders


class Skips(nn.Module):
    """``a -> b -> c -> head``, where ``head`` also reads ``a``'s output through a ``torch.cat``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.a(x * (1 + t / 1000))
        return self.head(torch.cat([self.c(self.b(h)), h], dim=-1))


REPLAYED = {"declare": [{"name": "r", "entry": "a", "exit": "c", "mode": "output", "inner": "replay"}], "num_steps": 7}


@torch.no_grad()
def denoise(model: nn.Module, config: dict, steps: int = 7) -> tuple[torch.Tensor, cachekit.CacheHandle]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with cachekit.cached(model, config) as handle:
        for index in range(steps):
            x = x - 0.1 * model(x, torch.tensor(900.0 - 100 * index))
    return x, handle


def forecast_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forecast every replayed output, as before live readers were told apart."""
    monkeypatch.setattr(LiveReaders, "forecasts", lambda self, path: True)


def test_an_inner_output_that_live_code_reads_through_a_cat_is_forecast_and_the_others_are_stored(monkeypatch):
    model = Skips()
    config = {**REPLAYED, "policy": {"kind": "uniform", "interval": 2}, "forecast": {"name": "taylor", "order": 2}}
    served, handle = denoise(model, config)
    (runner,) = handle.runtimes[0].runners
    assert runner.readers.paths == {"a", "c"}  # b's output feeds only c, which does not run on reuse
    rows = 3 * 4 * 4  # bytes of one output: 3 rows of 4 float32
    assert handle.stats["r"].held_bytes() == {"TaylorForecast": 3 * 2 * rows, "StoredResult": rows}
    forecast_everything(monkeypatch)
    everything, _ = denoise(model, config)
    assert torch.equal(served, everything)  # what no live code reads never reaches the output
    plain, _ = denoise(model, {**config, "forecast": "none"})
    assert not torch.allclose(served, plain, atol=1e-4)


def test_a_refresh_that_fails_mid_watch_leaves_no_mode_behind():
    model = Skips()
    model.head.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    handle = cachekit.enable(model, {**REPLAYED, "policy": {"kind": "uniform", "interval": 2}, "forecast": "linear"})
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        model(torch.randn(3, 4), torch.tensor(900.0))
    assert _get_current_function_mode() is not None  # the watch is still open: the call never finished
    handle.disable()
    assert _get_current_function_mode() is None
    (runner,) = handle.runtimes[0].runners
    assert runner.readers.paths is not None and not runner.readers.watching


class TwoSkips(nn.Module):
    """Two :class:`Skips` in a row: two replayed regions watched in the same refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = Skips(), Skips()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x, t), t)


def test_overlapping_watches_leave_no_mode_behind():
    """The first region's watch ends while the second's mode sits above it: both leave the stack."""
    regions = [
        {"name": name, "entry": f"{name}.a", "exit": f"{name}.c", "mode": "output", "inner": "replay"}
        for name in ("first", "second")
    ]
    config = {"declare": regions, "num_steps": 7, "policy": {"kind": "uniform", "interval": 2}, "forecast": "linear"}
    for _ in range(3):
        _, handle = denoise(TwoSkips(), config)
        assert all(runner.readers.paths is not None for runner in handle.runtimes[0].runners)
        assert _get_current_function_mode_stack() == []


def test_a_watch_ending_under_another_tools_mode_keeps_that_mode():
    model = Skips()
    handle = cachekit.enable(model, {**REPLAYED, "policy": {"kind": "uniform", "interval": 2}, "forecast": "linear"})
    with torch.no_grad():
        model(torch.randn(3, 4), torch.tensor(900.0))  # the watch opens and stays open
        with BaseTorchFunctionMode() as other:
            handle.disable()  # ends the watch below ``other``
            assert _get_current_function_mode_stack() == [other]
    assert _get_current_function_mode_stack() == []
