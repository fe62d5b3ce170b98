"""Wan 2.2's two experts in one pipeline: each denoiser has its own clock, state and policy,
and the pipeline's switch from the high-noise to the low-noise expert is honoured."""

from __future__ import annotations

import pytest
import torch

import cachekit
from cachekit.clock import StepInfo
from cachekit.experiments.metrics import relative_l1
from tests.av_models import run_pipeline, wan_pipeline
from tests.test_av_pipelines import inner_calls
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 8
CONTEXTS = (0, 1)
"""Wan runs the conditional and unconditional branches as two calls per step."""
EXPERT_POLICIES = {
    "policy": {"kind": "uniform", "interval": 2},
    "denoiser_policies": {"transformer_2": {"kind": "uniform", "interval": 3}},
}


@pytest.fixture(scope="module")
def wan22() -> tuple:
    pipe, kwargs = wan_pipeline(two_experts=True)
    return pipe, kwargs, run_pipeline(pipe, kwargs, STEPS)


def switch_step(pipe) -> int:
    """The first step the pipeline gives to ``transformer_2``: its timestep is below the boundary."""
    boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    return next(index for index, t in enumerate(pipe.scheduler.timesteps) if t < boundary)


def test_each_expert_has_its_own_clock_state_and_policy(wan22) -> None:
    pipe, kwargs, reference = wan22
    switch = switch_step(pipe)
    assert 0 < switch < STEPS - 1, "the switch must fall mid-schedule for this test to mean anything"
    high, low = "transformer/blocks[1:2]", "transformer_2/blocks[1:2]"
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 1}}) as always:
        calls, output = inner_calls(always, lambda: run_pipeline(pipe, kwargs, STEPS))
    assert torch.equal(output, reference), "always refreshing changed the output"
    per_refresh = {name: count // always.stats[name].refreshes for name, count in calls.items()}
    with cachekit.cached(pipe, EXPERT_POLICIES) as handle:
        calls, output = inner_calls(handle, lambda: run_pipeline(pipe, kwargs, STEPS))
    runners = {runner.stats_name: runner for runtime in handle.runtimes for runner in runtime.runners}
    assert list(handle.regions) == [high, low]
    assert runners[high].runtime.clock is not runners[low].runtime.clock
    assert runners[high].state is not runners[low].state
    assert [runners[name].policy.interval for name in (high, low)] == [2, 3]
    for context in CONTEXTS:
        assert sorted(handle.stats[high].hits[context]) == list(range(switch)), (
            "the high-noise expert ran after the switch"
        )
        assert sorted(handle.stats[low].hits[context]) == list(range(switch, STEPS)), (
            "the low-noise expert ran before it"
        )
        assert handle.stats.refresh_steps(high, context) == list(range(0, switch, 2))
        # the low-noise expert's first call refreshes: its own state holds nothing yet
        assert handle.stats.refresh_steps(low, context) == [switch] + [
            s for s in range(switch + 1, STEPS) if s % 3 == 0
        ]
    for name in (high, low):
        assert calls[name] == handle.stats[name].refreshes * per_refresh[name], f"{name} computed on a reuse step"
    error = relative_l1(output, reference)
    assert 0 < error < 0.05
    assert torch.equal(run_pipeline(pipe, kwargs, STEPS), reference)


def test_both_experts_see_the_whole_schedule(wan22, recorded: list[StepInfo]) -> None:
    """The low-noise expert's steps are numbered on the whole schedule: index from the switch
    on, ``num_steps`` the pipeline's, so step-based policies mean the same in both experts."""
    pipe, kwargs, _ = wan22
    with cachekit.cached(pipe, {"policy": {"kind": "recording"}}):
        run_pipeline(pipe, kwargs, STEPS)
    assert [step.index for step in recorded] == [index for index in range(STEPS) for _ in CONTEXTS]
    assert {step.num_steps for step in recorded} == {STEPS}
    assert [step.context for step in recorded] == list(CONTEXTS) * STEPS


def test_one_expert_cached_the_other_untouched(wan22) -> None:
    pipe, kwargs, reference = wan22
    with cachekit.cached(
        pipe, {"denoisers": ["transformer_2"], "policy": {"kind": "uniform", "interval": 2}}
    ) as handle:
        output = run_pipeline(pipe, kwargs, STEPS)
        assert "forward" not in vars(pipe.transformer)
    assert list(handle.regions) == ["blocks[1:2]"]
    assert handle.stats.reuses > 0
    assert 0 < relative_l1(output, reference) < 0.05
