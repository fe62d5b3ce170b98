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

With an ``anchor`` (refresh steps known to be good, or the path of a calibration file, whose
schedule for each region is then that region's anchor) the weights come from it instead:
each of its segments weighs 1 in all, spread evenly over its steps, so at a steady drift
every sample refreshes exactly at the anchor's steps, and a sample's drift moves its
refreshes around them. An anchored refresh falls on the step whose score is nearest its share
(it is due once the shortfall is below half the next step's weight): a steady drift puts the
share exactly on an anchor step, so without this a drift a hair below steady would delay every
refresh by a step, however little it is trusted. On the shipped digits models the error of a segment varies by only
5-11% from sample to sample (it is a property of the steps more than of the sample), so the
anchor decides most of the quality and the drift the rest.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from cachekit.calibration.file import CalibrationFile
from cachekit.clock import StepInfo
from cachekit.errors import ConfigError, PolicyError
from cachekit.policies.base import Decision, Policy, PolicyBinding, PolicyState, register_policy, where
from cachekit.policies.calibrated import check_binding
from cachekit.policies.probed import ProbeName
from cachekit.policies.schedule import planned_steps

_TINY = torch.finfo(torch.float32).tiny
_ROUNDING = 1e-5
"""Relative slack on the share a score must reach: sums of ``1 / n`` (in float32 per row) fall a rounding short of 1."""


@lru_cache(maxsize=64)
def step_weights(num_steps: int, spread: float) -> torch.Tensor:
    """``w(j) = 1 / (j / (num_steps - 1) + spread)`` for each step ``j``: how much a reuse at ``j`` costs."""
    progress = torch.arange(num_steps, dtype=torch.float64) / max(num_steps - 1, 1)
    return 1.0 / (progress + spread)


@lru_cache(maxsize=64)
def anchor_weights(num_steps: int, anchor: tuple[int, ...]) -> torch.Tensor:
    """Weights that put a steady drift's refreshes at ``anchor`` (step 0 first): each segment after a
    refresh weighs 1 in all, ``1 / length`` per step, the last one up to the last step. An anchor
    that refreshes at the last step leaves that segment empty: it then weighs 1 past the end
    (entry ``num_steps``), so every refresh's share stays one segment."""
    weights = torch.zeros(num_steps + 1, dtype=torch.float64)
    ends = [*anchor[1:], num_steps - 1]
    for start, end in zip(anchor, ends, strict=True):
        if end > start:
            weights[start + 1 : end + 1] = 1.0 / (end - start)
    if anchor[-1] == num_steps - 1:
        weights[num_steps] = 1.0
    return weights


@lru_cache(maxsize=64)
def step_plan(num_steps: int, spread: float, anchor: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The step weights (from ``anchor`` when given, else from ``spread``) and, entry ``k``, the
    summed weight of the steps after step ``k`` (and of any entry past the end)."""
    weights = step_weights(num_steps, spread) if anchor is None else anchor_weights(num_steps, anchor)
    return weights, weights.sum() - weights.cumsum(0)


@lru_cache(maxsize=64)
def _anchor_plan(
    anchor: tuple[int, ...], planned: int | None, actual: int, remap: bool, source: str
) -> tuple[int, ...]:
    """``anchor``'s steps for a generation of ``actual`` steps, checked (and remapped) as a schedule's are."""
    return tuple(sorted(planned_steps(anchor, planned, actual, remap, source)))


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
    anchor: tuple[int, ...] | str | None = Field(
        None,
        min_length=1,
        description="Refresh steps a steady drift reproduces, or a calibration file (each region's schedule); "
        "sets refreshes, replaces spread.",
    )
    remap: bool = Field(
        False, description="Map a calibration file's anchor onto another number of steps instead of failing."
    )
    trust: float | None = Field(
        None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="How far a sample's relative drift moves its refreshes: 1 all the way, 0 not at all "
        "(the steady drift's steps: the anchor's); unset: a calibration file anchor's fitted trust, else 1.",
    )
    _anchor_for: int | None = PrivateAttr(None)
    """The number of steps a file's anchor was calibrated for."""
    _anchor_source: str = PrivateAttr("the adaptive anchor")
    """What error messages call the anchor."""

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

    @field_validator("anchor")
    @classmethod
    def _anchor_steps(cls, anchor: tuple[int, ...] | str | None) -> tuple[int, ...] | str | None:
        if anchor is None or isinstance(anchor, str):
            return anchor
        if any(step < 0 for step in anchor):
            raise ConfigError(f"anchor steps count from 0, got {list(anchor)}")
        return tuple(sorted({0, *anchor}))

    @model_validator(mode="after")
    def _anchor_sets_the_budget(self) -> AdaptivePolicy:
        if self.anchor is None:
            return self
        if "spread" in self.model_fields_set:
            raise ConfigError("give 'spread' or 'anchor', not both: with an anchor the step weights come from its gaps")
        if "refreshes" in self.model_fields_set:
            raise ConfigError("give 'refreshes' or 'anchor', not both: the anchor's steps are the budget")
        if not isinstance(self.anchor, str):
            if self.remap:
                raise ConfigError(
                    "'remap' maps a calibration file's anchor onto another number of steps, and anchor steps "
                    "name none: give the file as the anchor, or list the steps for this step count"
                )
            object.__setattr__(self, "refreshes", len(self.anchor))
        return self

    def bind(self, binding: PolicyBinding) -> AdaptivePolicy:
        """With a calibration file as the anchor: the region's schedule from it, checked against the
        model, and (unless ``trust`` is set) the trust calibration fitted for it."""
        if not isinstance(self.anchor, str):
            return self
        calibration = CalibrationFile.load(self.anchor)
        region = calibration.regions[check_binding(calibration, binding, self.anchor)]
        steps = region.schedule.steps
        update: dict[str, Any] = {"anchor": steps, "refreshes": len(steps)}
        if self.trust is None and region.drift_trust is not None:
            if region.drift_trust.probe != self.probe:
                raise ConfigError(
                    f"calibration {self.anchor!r} fitted the drift's trust on probe {region.drift_trust.probe!r}, "
                    f"and this adaptive policy probes {self.probe!r}: set 'probe: {region.drift_trust.probe}', "
                    "set 'trust', or calibrate with this probe"
                )
            update["trust"] = region.drift_trust.trust
        bound = self.model_copy(update=update)
        bound._anchor_for = calibration.num_steps
        bound._anchor_source = f"the adaptive anchor, calibration {self.anchor!r},"
        return bound

    def probe_name(self) -> str:
        return self.probe

    def observe(self, state: PolicyState, drift: float | torch.Tensor) -> None:
        state.observed += 1
        state.expected = state.expected + (drift - state.expected) / min(state.observed, self.memory)
        relative = _relative(drift, state.expected)
        trust = 1.0 if self.trust is None else self.trust
        state.drift = relative if trust == 1.0 else 1.0 + trust * (relative - 1.0)

    def should_refresh(self, step: StepInfo, state: PolicyState) -> Decision:
        num_steps, anchor = self._plan(step)
        if step.index == 0:
            return True
        left = torch.as_tensor(self.refreshes - state.spent)
        last = torch.as_tensor(state.last)
        gap = step.index - last
        weights, after = step_plan(num_steps, self.spread, anchor)
        share = after[last] / (left.clamp_min(0) + 1)
        if anchor is not None:
            share = share - weights[step.index + 1] / 2
        due = torch.as_tensor(self._score(step, state) >= share * (1 - _ROUNDING)) & (gap >= self.min_gap)
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
        num_steps, anchor = self._plan(step)
        weight = float(step_plan(num_steps, self.spread, anchor)[0][step.index])
        return state.score + weight * state.drift

    def _plan(self, step: StepInfo) -> tuple[int, tuple[int, ...] | None]:
        """This generation's number of steps and the anchor for it (remapped when asked)."""
        if step.num_steps is None:
            raise PolicyError(
                "the adaptive policy needs the number of steps: enable cachekit on a pipeline "
                "with a scheduler, or set 'num_steps' in the config for a bare model"
            )
        if isinstance(self.anchor, str):
            raise PolicyError("an adaptive policy anchored on a calibration file reads it once installed by cachekit")
        if self.anchor is None:
            return step.num_steps, None
        anchor = _anchor_plan(self.anchor, self._anchor_for, step.num_steps, self.remap, self._anchor_source)
        return step.num_steps, anchor
