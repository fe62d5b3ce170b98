"""The ``adaptive`` policy: exactly the refreshes asked for, placed per sample by weighted drift."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import cachekit
from cachekit import AdaptivePolicy, StepInfo
from cachekit.errors import ConfigError, PolicyError
from cachekit.policies.adaptive import step_weights
from tests.models import tiny_transformer

REGION = {"name": "m", "entry": "blocks.1", "exit": "blocks.4"}


def decide(policy: AdaptivePolicy, drifts: torch.Tensor) -> torch.Tensor:
    """Run the policy alone over ``drifts`` (steps x rows, row 0 of step 0 unused): refresh marks, steps x rows."""
    num_steps, rows = drifts.shape
    state = policy.new_state()
    marks = []
    for index in range(num_steps):
        step = StepInfo(index, num_steps, None)
        if index:
            policy.observe(state, drifts[index] if rows > 1 else float(drifts[index, 0]))
        decision = torch.as_tensor(policy.should_refresh(step, state)).expand(rows)
        policy.update(state, step, decision if rows > 1 else bool(decision[0]))
        marks.append(decision)
    return torch.stack(marks)


@pytest.mark.parametrize("num_steps", [2, 7, 20, 50, 100])
@pytest.mark.parametrize("refreshes", [1, 3, 4, 5, 10, 60])
def test_every_row_spends_exactly_its_budget_whatever_its_drift(num_steps: int, refreshes: int) -> None:
    g = torch.Generator().manual_seed(num_steps * 100 + refreshes)
    drifts = torch.rand(num_steps, 4, generator=g) * torch.tensor([0.01, 0.1, 1.0, 10.0])
    drifts[num_steps // 2 :, 1] *= 50  # a row whose drift jumps halfway
    marks = decide(AdaptivePolicy(refreshes=refreshes, max_gap=9), drifts)
    assert marks.sum(0).tolist() == [min(refreshes, num_steps)] * 4
    assert marks[0].all()
    gaps = torch.diff(torch.nonzero(marks[:, 2]).flatten())
    if refreshes < num_steps:  # the cap holds while budget is left; a spent budget never refreshes
        assert bool((gaps <= 9).all())


def test_constant_drift_crowds_refreshes_early_and_spread_evens_them_out() -> None:
    drifts = torch.full((50, 1), 0.02)
    early = torch.nonzero(decide(AdaptivePolicy(refreshes=5), drifts)[:, 0]).flatten().tolist()
    even = torch.nonzero(decide(AdaptivePolicy(refreshes=5, spread=100.0), drifts)[:, 0]).flatten().tolist()
    assert early == [0, 5, 12, 21, 33]
    assert even == [0, 10, 20, 30, 40]
    weights = step_weights(50, 0.2)
    assert bool((weights[1:] < weights[:-1]).all())


def test_a_row_that_drifts_faster_refreshes_sooner() -> None:
    drifts = torch.full((50, 2), 0.02)
    drifts[7:11, 1] = 0.2
    marks = decide(AdaptivePolicy(refreshes=5), drifts)
    first_in_burst = [int(torch.nonzero(marks[7:, row]).flatten()[0]) + 7 for row in range(2)]
    assert first_in_burst[1] < first_in_burst[0]
    assert marks.sum(0).tolist() == [5, 5]


def test_min_gap_holds_against_drift_that_calls_for_a_refresh_at_every_step() -> None:
    drifts = torch.logspace(-3, 27, 30)[:, None]  # each step drifts ten times more than the one before
    unbounded = torch.nonzero(decide(AdaptivePolicy(refreshes=6), drifts)[:, 0]).flatten()
    bounded = torch.nonzero(decide(AdaptivePolicy(refreshes=6, min_gap=4), drifts)[:, 0]).flatten()
    assert int(torch.diff(unbounded).min()) < 4, "the drift never asked for close refreshes: nothing to bound"
    assert len(bounded) == 6 and int(torch.diff(bounded).min()) >= 4


def generate(model, sample: torch.Tensor, num_steps: int, jolt: torch.Tensor | None = None) -> torch.Tensor:
    """A bare-model denoising loop; ``jolt`` is added at step 3 (a row that drifts strongly)."""
    for index in range(num_steps):
        if jolt is not None and index == 3:
            sample = sample + jolt
        sample = sample - 0.1 * model(sample, torch.tensor(1000.0 - 1000.0 * index / num_steps))
    return sample


@pytest.mark.parametrize("refreshes", [1, 4, 7])
def test_the_region_runs_exactly_refreshes_times(refreshes: int) -> None:
    model = tiny_transformer()
    calls = []
    hook = model.blocks[2].mlp.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    policy = {"kind": "adaptive", "refreshes": refreshes}
    try:
        with cachekit.cached(model, {"declare": [REGION], "policy": policy, "num_steps": 16}) as handle:
            generate(model, torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0)), 16)
    finally:
        hook.remove()
    assert len(calls) == refreshes == handle.stats["m"].refreshes


def test_a_sample_in_a_batch_gets_what_it_gets_alone() -> None:
    model = tiny_transformer()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 4, generator=g), torch.randn(1, 8, 4, generator=g)
    jolt = torch.cat([torch.zeros(1, 8, 4), 5 * torch.randn(1, 8, 4, generator=g)])
    config = {"declare": [REGION], "policy": {"kind": "adaptive", "refreshes": 5}, "num_steps": 20}
    with torch.no_grad(), cachekit.cached(model, config) as handle:
        alone = generate(model, a, 20)
        together = generate(model, torch.cat([a, b]), 20, jolt)
        marks = "".join(handle.stats["m"].hits[0].values())
    assert "r" in marks, "A and B never disagreed: the check below would prove nothing"
    assert handle.stats["m"].computed_share == pytest.approx(5 / 20)
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"refreshes": 0}, r"policy\.refreshes"),
        ({"spread": 0.0}, r"policy\.spread"),
        ({"min_gap": 5, "max_gap": 3}, r"policy\.max_gap: max_gap=3 is below min_gap=5"),
        ({"probe": "entry_inptu"}, r"unknown probe 'entry_inptu' \(did you mean 'entry_input'\?\)"),
        ({"refreshs": 5}, r"refreshs"),
    ],
)
def test_bad_fields_are_clear_config_errors(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cachekit.load_config({"policy": {"kind": "adaptive", **fields}})


def test_gap_order_is_checked_on_the_policy_itself() -> None:
    with pytest.raises(ValidationError, match="max_gap must be at least min_gap"):
        AdaptivePolicy(min_gap=2, max_gap=1)


def test_it_needs_the_number_of_steps() -> None:
    policy = AdaptivePolicy()
    with pytest.raises(PolicyError, match="adaptive policy needs the number of steps.*num_steps"):
        policy.should_refresh(StepInfo(3, None, None), policy.new_state())


def test_the_similarity_policy_decides_as_before() -> None:
    """The hit map main's similarity policy gave on this loop before the adaptive kind existed."""
    model = tiny_transformer()
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 8, 4, generator=g)
    jolt = torch.cat([torch.zeros(1, 8, 4), 3 * torch.randn(1, 8, 4, generator=g)])
    policy = {"kind": "similarity", "threshold": 0.05, "max_consecutive_reuse": 4, "refresh_last_steps": 1}
    with torch.no_grad(), cachekit.cached(model, {"declare": [REGION], "num_steps": 20, "policy": policy}) as handle:
        x = sample
        for index in range(20):
            x = x + jolt if index == 6 else x
            x = x - 0.05 * model(x, torch.tensor(1000.0 - 50 * index))
    assert "".join(handle.stats["m"].hits[0].values()) == "R.R.R.R.rr.rr.rr.rrR"


@pytest.mark.parametrize("anchor", [(0, 3, 10, 22, 37), (0, 4, 15, 36), (0, 1, 2, 48, 49), (0,)])
def test_a_steady_drift_refreshes_at_the_anchor(anchor: tuple[int, ...]) -> None:
    for level in (0.02, 5.0):
        marks = decide(AdaptivePolicy(anchor=anchor), torch.full((50, 1), level))
        assert tuple(torch.nonzero(marks[:, 0]).flatten().tolist()) == anchor


def test_an_anchored_row_moves_around_its_anchor_and_keeps_the_budget() -> None:
    drifts = torch.full((50, 3), 0.02)
    drifts[5:10, 1] = 0.02 * 3.0 ** torch.arange(1, 6)  # drifts ever faster before the anchor's step 10
    drifts[5:20, 2] = 0.002  # calms down
    marks = decide(AdaptivePolicy(anchor=(3, 10, 22, 37)), drifts)
    refreshes = [torch.nonzero(marks[:, row]).flatten().tolist() for row in range(3)]
    assert refreshes[0] == [0, 3, 10, 22, 37]
    assert refreshes[1][2] < 10 and refreshes[2][2] > 10
    assert marks.sum(0).tolist() == [5, 5, 5]


def test_trust_scales_how_far_the_drift_moves_refreshes_from_the_anchor() -> None:
    drifts = torch.full((50, 2), 0.02)
    drifts[5:10, 0] = 0.02 * 3.0 ** torch.arange(1, 6)  # drifts ever faster before the anchor's step 10
    drifts[5:20, 1] = 0.002  # calms down
    anchor = (0, 3, 10, 22, 37)

    def third_refresh(trust: float) -> list[int]:
        marks = decide(AdaptivePolicy(anchor=anchor, trust=trust), drifts)
        assert marks.sum(0).tolist() == [5, 5]
        return [int(torch.nonzero(marks[:, row]).flatten()[2]) for row in range(2)]

    full, half, none = third_refresh(1.0), third_refresh(0.5), third_refresh(0.0)
    assert none == [10, 10]  # no trust: the anchor's steps, whatever the drift
    assert full[0] < half[0] < 10 < half[1] < full[1]
    default = decide(AdaptivePolicy(anchor=anchor), drifts)
    assert torch.equal(default, decide(AdaptivePolicy(anchor=anchor, trust=1.0), drifts))
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        AdaptivePolicy(trust=1.5)


@pytest.mark.parametrize("anchor", [(0, 3, 10, 22, 37), (0, 2, 4, 7, 10, 15, 21, 27, 34, 41)])
def test_a_drift_a_little_off_steady_keeps_the_anchor(anchor: tuple[int, ...]) -> None:
    """A refresh moves off an anchor step only once the drift moves it nearer another step: a
    slowly calming or quickening sample, or one trusted little, refreshes at the anchor."""
    steps = torch.arange(50, dtype=torch.float64).unsqueeze(1)
    for drifts, trust in ((0.02 * 0.99**steps, 1.0), (0.02 * 1.01**steps, 1.0), (0.02 * 0.7**steps, 0.01)):
        marks = decide(AdaptivePolicy(anchor=anchor, trust=trust), drifts.float())
        assert tuple(torch.nonzero(marks[:, 0]).flatten().tolist()) == anchor


def test_an_anchor_sets_the_budget_and_refuses_what_contradicts_it() -> None:
    assert AdaptivePolicy(anchor=(37, 3, 10, 22)).refreshes == 5
    with pytest.raises(ConfigError, match="give 'refreshes' or 'anchor', not both"):
        cachekit.load_config({"policy": {"kind": "adaptive", "anchor": [0, 10, 20], "refreshes": 3}})
    with pytest.raises(ValidationError, match="give 'spread' or 'anchor'"):
        AdaptivePolicy(anchor=(0, 10, 20), spread=1.0)
    with pytest.raises(ValidationError, match="anchor steps count from 0"):
        AdaptivePolicy(anchor=(0, -2))
    state = AdaptivePolicy(anchor=(0, 10, 60)).new_state()
    with pytest.raises(PolicyError, match="anchor refreshes at step 60, past the last step"):
        AdaptivePolicy(anchor=(0, 10, 60)).should_refresh(StepInfo(1, 50, None), state)


def test_an_anchored_policy_on_a_model_refreshes_at_the_anchor_when_rows_agree() -> None:
    torch.manual_seed(0)
    model = tiny_transformer()
    sample = torch.randn(2, 8, 4)
    config = {"declare": [REGION], "policy": {"kind": "adaptive", "anchor": [0, 2, 5], "memory": 1}, "num_steps": 8}
    with torch.no_grad(), cachekit.cached(model, config) as handle:
        generate(model, sample, 8)
        assert handle.stats.refresh_steps("m") == [0, 2, 5]
        assert "".join(handle.stats["m"].hits[0].values()) == "R.R..R.."
