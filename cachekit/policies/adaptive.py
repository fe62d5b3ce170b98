"""``adaptive``: a target number of refreshes, spent where each sample's probe drift calls for them.

The user names the budget (``refreshes: 5``), not a threshold. Every step ``j`` of ``S``
has a weight ``w(j) = 1 / (j / (S - 1) + spread)``: a reuse early in sampling costs more
than one late, because an error in the region's result at high noise is carried through
every later step, while the probe's drift is largest at the ends of sampling, where it
matters least. Per sample, the policy adds up ``w(j) * drift(j) / expected(j)`` since the
last refresh, where ``expected(j)`` is the sample's recent drift (its mean over the last
``memory`` calls, exponentially weighted), and refreshes once that reaches an equal share
of what is left to spend: the weights of the steps after the last refresh divided over the
refreshes left plus one. A sample whose drift jumps above its recent level refreshes
sooner, one that calms down later; at a steady drift the refreshes fall where the weights
put them. With the budget spent it never refreshes again, and with as many steps left as
refreshes it refreshes at each, so every generation makes exactly ``refreshes`` refreshes
per context (fewer only when there are fewer steps).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from cachekit.clock import StepInfo
from cachekit.errors import ConfigError, PolicyError
from cachekit.policies.base import Decision, Policy, PolicyState, register_policy, where
from cachekit.policies.probed import ProbeName

_TINY = torch.finfo(torch.float32).tiny


@lru_cache(maxsize=64)
def step_weights(num_steps: int, spread: float) -> torch.Tensor:
    """``w(j) = 1 / (j / (num_steps - 1) + spread)`` for each step ``j``: how much a reuse at ``j`` costs."""
    progress = torch.arange(num_steps, dtype=torch.float64) / max(num_steps - 1, 1)
    return 1.0 / (progress + spread)


@lru_cache(maxsize=64)
def weight_after(num_steps: int, spread: float) -> torch.Tensor:
    """Entry ``k``: the summed weight of the steps after step ``k``."""
    weights = step_weights(num_steps, spread)
    return weights.sum() - weights.cumsum(0)


def _relative(drift: float | torch.Tensor, expected: float | torch.Tensor) -> float | torch.Tensor:
    """``drift / expected``, 0 where both are 0 (a probe that did not change)."""
    if isinstance(expected, torch.Tensor):
        return drift / expected.clamp_min(_TINY)
    return drift / max(expected, _TINY)


def _answer(decision: torch.Tensor) -> Decision:
    """One bool for a decision without rows, else the per-row tensor."""
    return bool(decision) if decision.dim() == 0 else decision


@register_policy
class AdaptivePolicy(Policy):
    """Exactly ``refreshes`` refreshes per generation, placed by each sample's weighted probe drift.

    A budget-driven similarity policy: the threshold is derived at every step from the
    refreshes left and the steps left, and the drift is measured against the sample's own
    recent drift, so nothing is hand-picked per model.
    Needs the number of steps (from the scheduler, or ``num_steps`` in the config).
    """

    kind: Literal["adaptive"] = "adaptive"
    refreshes: int = Field(
        10, strict=True, ge=1, description="Refreshes per generation and context, the first step's included."
    )
    probe: ProbeName = "entry_input"
    spread: float = Field(
        0.2,
        strict=True,
        gt=0.0,
        le=100.0,
        description="Step weights 1 / (progress + spread): small crowds refreshes early, large spreads them evenly.",
    )
    memory: int = Field(
        2, strict=True, ge=1, description="Calls the expected drift averages over (exponentially weighted)."
    )
    min_gap: int = Field(1, strict=True, ge=1, description="Steps at least between two refreshes (unless due).")
    max_gap: int | None = Field(
        None, strict=True, ge=1, description="Refresh once this many steps passed since the last, whatever the drift."
    )

    state_defaults: ClassVar[dict[str, Any]] = {
        "drift": 0.0,
        "expected": 1.0,
        "observed": 0,
        "score": 0.0,
        "spent": 0,
        "last": 0,
    }
    """``drift``: this call's, over ``expected``, the recent drift of ``observed`` calls; ``score``: weighted
    relative drift since the last refresh; ``spent``: refreshes so far; ``last``: the last refresh's step."""

    @field_validator("max_gap")
    @classmethod
    def _not_below_min_gap(cls, max_gap: int | None, info: ValidationInfo) -> int | None:
        min_gap = info.data.get("min_gap", 1)
        if max_gap is not None and max_gap < min_gap:
            raise ConfigError(
                f"max_gap={max_gap} is below min_gap={min_gap}; max_gap must be at least min_gap (or unset)"
            )
        return max_gap

    def probe_name(self) -> str:
        return self.probe

    def observe(self, state: PolicyState, drift: float | torch.Tensor) -> None:
        state.observed += 1
        state.expected = state.expected + (drift - state.expected) / min(state.observed, self.memory)
        state.drift = _relative(drift, state.expected)

    def should_refresh(self, step: StepInfo, state: PolicyState) -> Decision:
        num_steps = self._num_steps(step)
        if step.index == 0:
            return True
        left = torch.as_tensor(self.refreshes - state.spent)
        last = torch.as_tensor(state.last)
        gap = step.index - last
        share = weight_after(num_steps, self.spread)[last] / (left.clamp_min(0) + 1)
        due = torch.as_tensor(self._score(step, state) >= share) & (gap >= self.min_gap)
        if self.max_gap is not None:
            due = due | (gap >= self.max_gap)
        return _answer((due | (num_steps - step.index <= left)) & (left > 0))

    def update(self, state: PolicyState, step: StepInfo, refreshed: Decision) -> None:
        state.score = where(refreshed, 0.0, self._score(step, state))
        state.spent = state.spent + where(refreshed, 1, 0)
        state.last = where(refreshed, step.index, state.last)
        state.drift = 0.0

    def _score(self, step: StepInfo, state: PolicyState) -> float | torch.Tensor:
        """The weighted relative drift since the last refresh, this call's included."""
        weight = float(step_weights(self._num_steps(step), self.spread)[step.index])
        return state.score + weight * state.drift

    def _num_steps(self, step: StepInfo) -> int:
        if step.num_steps is None:
            raise PolicyError(
                "the adaptive policy needs the number of steps: enable cachekit on a pipeline "
                "with a scheduler, or set 'num_steps' in the config for a bare model"
            )
        return step.num_steps
