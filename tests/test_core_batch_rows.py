"""Decisions are per sample: in a batch [A, B], A gets what A alone gets, whatever B does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import cachekit
from tests.models import tiny_transformer

TIMESTEPS = (999.0, 900.0, 800.0, 700.0, 600.0, 500.0, 400.0, 300.0)


@torch.no_grad()
def generate(model, sample: torch.Tensor, jolt: torch.Tensor | None = None) -> torch.Tensor:
    """A short denoising loop; ``jolt`` is added to the sample at step 3 (a row that drifts strongly)."""
    for index, t in enumerate(TIMESTEPS):
        if jolt is not None and index == 3:
            sample = sample + jolt
        sample = sample - 0.1 * model(sample, torch.tensor(t))
    return sample


def config(mode: str, forecast: str, inner: str = "passthrough", threshold: float = 0.05) -> dict:
    region = {"name": "m", "entry": "blocks.1", "exit": "blocks.4", "mode": mode, "inner": inner}
    return {"declare": [region], "policy": {"kind": "similarity", "threshold": threshold}, "forecast": forecast}


@pytest.mark.parametrize("forecast", ["none", "linear"])
@pytest.mark.parametrize("mode,inner", [("residual", "passthrough"), ("output", "passthrough"), ("output", "replay")])
def test_a_sample_in_a_batch_gets_what_it_gets_alone(mode: str, inner: str, forecast: str) -> None:
    model = tiny_transformer()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 4, generator=g), torch.randn(1, 8, 4, generator=g)
    jolt = torch.cat([torch.zeros(1, 8, 4), 5 * torch.randn(1, 8, 4, generator=g)])  # B alone drifts
    with cachekit.cached(model, config(mode, forecast, inner)) as handle:
        alone = generate(model, a)
        alone_marks = dict(handle.stats["m"].hits[0])
        together = generate(model, torch.cat([a, b]), jolt)
        together_marks = dict(handle.stats["m"].hits[0])
    assert "." in alone_marks.values(), "A alone never reused: the check below would prove nothing"
    assert "r" in together_marks.values(), "A and B never disagreed: the check below would prove nothing"
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=0)


def test_rows_that_agree_take_the_whole_batch_path() -> None:
    model = tiny_transformer()
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(1))
    with cachekit.cached(model, config("residual", "none", threshold=0.3)) as handle:
        generate(model, sample.repeat(3, 1, 1))
    marks = "".join(handle.stats["m"].hits[0].values())
    assert "r" not in marks and "." in marks
    assert handle.stats["m"].computed_share == marks.count("R") / len(marks)


def test_a_partial_refresh_counts_the_rows_it_computed() -> None:
    stats = cachekit.RegionStats()
    stats.record(0, 0, computed=4, rows=4)
    stats.record(1, 0, computed=1, rows=4)
    stats.record(2, 0, computed=0, rows=4)
    assert (stats.refreshes, stats.reuses) == (2, 1)
    assert stats.computed_share == pytest.approx(5 / 12)
    assert stats.hits[0] == {0: "R", 1: "r", 2: "."}


def _jolted_pair():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 4, generator=g), torch.randn(1, 8, 4, generator=g)
    return a, torch.cat([a, b]), torch.cat([torch.zeros(1, 8, 4), 5 * torch.randn(1, 8, 4, generator=g)])


@pytest.mark.parametrize("rows_independent", [True, False])
def test_a_partial_refresh_computes_the_refreshed_rows_only_when_rows_are_independent(rows_independent) -> None:
    model = tiny_transformer()
    region = cachekit.Region("m", ("blocks.1", "blocks.2", "blocks.3", "blocks.4"), mode="residual")
    if not rows_independent:
        region = dataclasses.replace(region, rows_independent=False)
    rows_seen: list[int] = []
    hook = model.blocks[2].mlp.register_forward_pre_hook(lambda module, args: rows_seen.append(args[0].shape[0]))

    class OneRegion:
        @cachekit.hookimpl
        def cachekit_regions(self, model):
            return [region]

    name = cachekit.register_plugin(OneRegion(), name="one-region")
    try:
        a, batch, jolt = _jolted_pair()
        with cachekit.cached(model, {"policy": {"kind": "similarity", "threshold": 0.05}}) as handle:
            alone = generate(model, a)
            rows_seen.clear()
            together = generate(model, batch, jolt)
    finally:
        cachekit.unregister_plugin(name)
        hook.remove()
    marks = "".join(handle.stats["m"].hits[0].values())
    assert "r" in marks
    assert rows_seen.count(1) == (marks.count("r") if rows_independent else 0)
    assert rows_seen.count(2) == marks.count("R") + (0 if rows_independent else marks.count("r"))
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=0)
