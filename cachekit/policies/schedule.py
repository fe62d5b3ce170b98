"""``schedule``: refresh at the steps given, and only there."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cachekit.clock import StepInfo
from cachekit.errors import PolicyError
from cachekit.policies.base import Policy, PolicyState, register_policy
from cachekit.policies.remap import remap_steps


@lru_cache(maxsize=64)
def _remapped(steps: tuple[int, ...], planned: int, actual: int) -> frozenset[int]:
    return frozenset(remap_steps(steps, planned, actual))


def planned_steps(
    steps: Sequence[int], planned: int | None, actual: int | None, remap: bool, source: str
) -> frozenset[int]:
    """The refresh steps of a generation of ``actual`` steps, from ``steps`` made for ``planned`` steps.

    Raises:
        PolicyError: the step counts differ and ``remap`` is off, a step lies past the last
            one, or the number of steps is unknown while it must be checked; ``source``
            names where the steps came from.
    """
    if planned is not None and actual is None:
        raise PolicyError(
            f"{source} is for {planned} steps, and this generation's number of steps is unknown: enable cachekit "
            "on a pipeline with a scheduler, or set 'num_steps' in the config for a bare model"
        )
    if planned is not None and actual != planned:
        if not remap:
            raise PolicyError(
                f"{source} is for {planned} steps, and this generation runs {actual}; calibrate for {actual} steps, "
                f"or set 'remap: true' to map the schedule onto {actual} steps (each step s becomes "
                f"round(s * {actual} / {planned}))"
            )
        return _remapped(tuple(steps), planned, actual)  # type: ignore[arg-type]
    if actual is not None and max(steps) >= actual:
        raise PolicyError(f"{source} refreshes at step {max(steps)}, past the last step ({actual - 1}) of {actual}")
    return frozenset(steps)


@register_policy
class SchedulePolicy(Policy):
    """Refresh exactly at ``steps`` (step 0 is always one: nothing is stored before it).

    ``num_steps``, when given, is the number of steps the schedule was made for: a generation
    of another length is an error unless ``remap`` maps the steps onto it
    (:func:`~cachekit.policies.remap.remap_steps`).
    """

    kind: Literal["schedule"] = "schedule"
    steps: tuple[int, ...] = Field(min_length=1, description="The refresh steps, counted from 0.")
    num_steps: int | None = Field(
        None, strict=True, ge=1, description="The number of steps the schedule is for (checked when given)."
    )
    remap: bool = Field(False, description="Map the steps onto another number of steps instead of failing.")

    @field_validator("steps")
    @classmethod
    def _sorted_steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if any(step < 0 for step in steps):
            raise ValueError(f"refresh steps count from 0, got {list(steps)}")
        return tuple(sorted({0, *steps}))

    @model_validator(mode="after")
    def _steps_fit(self) -> SchedulePolicy:
        if self.num_steps is not None and self.steps[-1] >= self.num_steps:
            raise ValueError(f"step {self.steps[-1]} is past the last step ({self.num_steps - 1}) of num_steps")
        return self

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        return step.index in planned_steps(self.steps, self.num_steps, step.num_steps, self.remap, "the schedule")

    def refresh_steps(self, num_steps: int) -> list[int]:
        return sorted(planned_steps(self.steps, self.num_steps, num_steps, self.remap, "the schedule"))
