"""Schedules of the built-in policies, exact and documented."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from cachekit import NonUniformPolicy, SimilarityPolicy, StepInfo, UniformPolicy
from cachekit.errors import PolicyError
from cachekit.policies import PolicyState, quadratic_center_steps


def refreshed(policy, num_steps: int, state: PolicyState | None = None) -> list[int]:
    state = state or policy.new_state()
    return [i for i in range(num_steps) if policy.should_refresh(StepInfo(i, num_steps, None), state)]


def test_uniform_interval_3_over_50_steps_refreshes_17_times():
    steps = refreshed(UniformPolicy(interval=3), 50)
    assert steps == list(range(0, 50, 3))
    assert len(steps) == 17 and steps[-1] == 48
    assert UniformPolicy(interval=3).refresh_steps(50) == steps


def test_uniform_warmup_then_every_interval():
    assert refreshed(UniformPolicy(interval=4, warmup_steps=3), 12) == [0, 1, 2, 3, 7, 11]


def test_uniform_interval_1_always_refreshes():
    assert refreshed(UniformPolicy(interval=1), 10) == list(range(10))


@pytest.mark.parametrize("num_steps,interval", [(50, 2), (50, 3), (50, 5), (50, 10), (20, 3), (25, 4)])
def test_nonuniform_has_uniform_budget_and_crowds_the_centre(num_steps, interval):
    policy = NonUniformPolicy(interval=interval, center=15, power=1.4)
    steps = policy.refresh_steps(num_steps)
    assert (
        len(steps) == len(UniformPolicy(interval=interval).refresh_steps(num_steps)) == math.ceil(num_steps / interval)
    )
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] < num_steps
    gaps = [b - a for a, b in pairwise(steps)]
    near_centre = min(range(len(gaps)), key=lambda i: abs(steps[i] - 15))
    assert gaps[near_centre] <= min(gaps[0], gaps[-1])


def test_nonuniform_matches_deepcache_reference_values():
    # DeepCache's sample_from_quad_center(50, 17, center=15, pow=1.4): computed with its code.
    assert quadratic_center_steps(50, 17, 15, 1.4) == (0, 3, 6, 8, 11, 13, 15, 17, 20, 22, 25, 28, 32, 35, 38, 42, 46)


def test_nonuniform_needs_num_steps():
    with pytest.raises(PolicyError, match="num_steps"):
        NonUniformPolicy().should_refresh(StepInfo(3, None, None), NonUniformPolicy().new_state())


def test_nonuniform_impossible_budget_is_a_clear_error():
    with pytest.raises(PolicyError, match="center"):
        quadratic_center_steps(6, 5, 3, 1.4)


def test_similarity_refreshes_on_drift_warmup_cap_and_tail():
    policy = SimilarityPolicy(threshold=0.5, warmup_steps=2, max_consecutive_reuse=3, refresh_last_steps=2)
    calm = policy.new_state(drift=0.1)
    assert refreshed(policy, 10, calm) == [0, 1, 8, 9]
    assert policy.should_refresh(StepInfo(4, 10, None), policy.new_state(drift=0.5))
    assert policy.should_refresh(StepInfo(4, 10, None), policy.new_state(reuses=3))
    assert not policy.should_refresh(StepInfo(4, 10, None), policy.new_state(reuses=2))


def test_similarity_without_num_steps_cannot_keep_the_tail_rule():
    policy = SimilarityPolicy(threshold=0.5, refresh_last_steps=2)
    with pytest.raises(PolicyError, match="refresh_last_steps=2 needs the number of steps"):
        policy.should_refresh(StepInfo(8, None, None), policy.new_state())
    assert not SimilarityPolicy(threshold=0.5).should_refresh(StepInfo(8, None, None), policy.new_state())
