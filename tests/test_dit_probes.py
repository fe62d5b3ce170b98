"""The DiT similarity probe ``entry_residual``: First-Block-Cache's signal, from work done anyway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit.experiments.metrics import relative_l1
from tests import dit_models

STEPS = 10


def similarity(threshold: float) -> dict[str, Any]:
    return {"policy": {"kind": "similarity", "probe": "entry_residual", "threshold": threshold}}


@contextmanager
def first_block_residuals(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collects, call by call, the first block's residual: the second block's input minus the
    first's (recorded by forward pre-hooks, removed on exit)."""
    inputs: dict[str, list[torch.Tensor]] = {"transformer_blocks.0": [], "transformer_blocks.1": []}
    residuals: list[torch.Tensor] = []

    def record(path: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[path].append((kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).clone())

        return hook

    hooks = [model.get_submodule(path).register_forward_pre_hook(record(path), with_kwargs=True) for path in inputs]
    try:
        yield residuals
    finally:
        for hook in hooks:
            hook.remove()
        pairs = zip(*inputs.values(), strict=True)
        residuals += [after - before for before, after in pairs]


def expected_refreshes(residuals: list[torch.Tensor], threshold: float) -> list[int]:
    """The ``similarity`` rule by hand: drifts of the residual add up until they reach the threshold."""
    refreshes, accumulated = [0], 0.0
    for step in range(1, len(residuals)):
        accumulated += relative_l1(residuals[step], residuals[step - 1])
        if accumulated >= threshold:
            refreshes.append(step)
            accumulated = 0.0
    return refreshes


@pytest.fixture(scope="module")
def flux() -> tuple[nn.Module, dict[str, Any]]:
    """A tiny Flux whose time conditioning is smoothed: adjacent steps drift 0.13 to 0.21."""
    return dit_models.smooth_flux()


def test_refreshes_follow_the_first_block_residual(flux: tuple[nn.Module, dict[str, Any]]) -> None:
    model, kwargs = flux
    threshold = 0.3
    with first_block_residuals(model) as residuals, cachekit.cached(model, similarity(threshold)) as handle:
        dit_models.denoise(model, kwargs, steps=STEPS)
    refreshes = handle.stats.refresh_steps("blocks[1:4]")
    assert refreshes == expected_refreshes(residuals, threshold)
    assert 1 < len(refreshes) < STEPS, f"threshold {threshold} should mix refreshes and reuses: {refreshes}"


def test_the_probe_adds_no_block_call(flux: tuple[nn.Module, dict[str, Any]]) -> None:
    model, kwargs = flux
    calls = []
    hook = model.transformer_blocks[0].attn.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with cachekit.cached(model, similarity(0.3)):
            dit_models.denoise(model, kwargs, steps=STEPS)
    finally:
        hook.remove()
    assert len(calls) == STEPS


def test_higher_thresholds_never_refresh_more(flux: tuple[nn.Module, dict[str, Any]]) -> None:
    model, kwargs = flux
    counts = []
    for threshold in (1e-4, 0.2, 0.3, 0.5, 100.0):
        with cachekit.cached(model, similarity(threshold)) as handle:
            dit_models.denoise(model, kwargs, steps=STEPS)
        counts.append(handle.stats.refreshes)
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == STEPS and counts[-1] == 1


def test_cfg_calls_keep_separate_probes() -> None:
    """Flux's true CFG calls the transformer twice a step: each call is a context with its own
    probe history and decisions, never compared with the other's."""
    pipe, call = dit_models.flux_pipeline(true_cfg=True)
    dit_models.smooth_time(pipe.transformer)
    threshold = 0.12
    with first_block_residuals(pipe.transformer) as residuals, cachekit.cached(pipe, similarity(threshold)) as handle:
        dit_models.run_pipeline(pipe, call, steps=STEPS)
    for context in (0, 1):
        own = residuals[context::2]  # the pipeline calls cond, then uncond, at every step
        refreshes = handle.stats.refresh_steps("blocks[1:4]", context)
        assert refreshes == expected_refreshes(own, threshold)
        assert 1 < len(refreshes) < STEPS
