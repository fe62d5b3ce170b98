"""``uniform``: refresh every ``interval`` steps (DeepCache's default schedule)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cachekit.clock import StepInfo
from cachekit.policies.base import Policy, PolicyState, register_policy


@register_policy
class UniformPolicy(Policy):
    """Refresh at the first ``warmup_steps`` steps, then every ``interval`` steps.

    With ``warmup_steps=0`` the refresh steps are ``0, interval, 2*interval, ...``: interval
    3 over 50 steps refreshes at 0, 3, ..., 48, 17 times. ``interval=1`` refreshes always.
    """

    kind: Literal["uniform"] = "uniform"
    interval: int = Field(3, strict=True, ge=1, description="Refresh every this many steps; 1 never reuses.")
    warmup_steps: int = Field(0, strict=True, ge=0, description="Steps at the start that always refresh.")

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        return self._is_refresh_step(step.index)

    def _is_refresh_step(self, index: int) -> bool:
        return index < self.warmup_steps or (index - self.warmup_steps) % self.interval == 0

    def refresh_steps(self, num_steps: int) -> list[int]:
        return [index for index in range(num_steps) if self._is_refresh_step(index)]
