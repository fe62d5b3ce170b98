"""``nonuniform``: DeepCache's quadratic schedule, refreshes concentrated around a centre step."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from cachekit.clock import StepInfo
from cachekit.errors import PolicyError
from cachekit.policies.base import Policy, PolicyState, register_policy


@lru_cache(maxsize=256)
def quadratic_center_steps(num_steps: int, num_refreshes: int, center: int, power: float) -> tuple[int, ...]:
    """The refresh steps of DeepCache's ``sample_from_quad_center``, computed the same way.

    Points spaced evenly on ``(step - center) ** (1 / power)`` are mapped back with
    ``** power``, so they crowd around ``center``. As in DeepCache the power is lowered in
    steps of 0.02 until exactly ``num_refreshes`` distinct steps come out; step 0 is always
    one of them. Negative bases go through complex numbers and keep their real part, which
    is what DeepCache's NumPy code does.
    """
    while power > 1:
        start = complex(-center) ** (1 / power) if center else 0.0
        stop = complex(num_steps - center) ** (1 / power)
        points = np.linspace(start, stop, num_refreshes + 1) ** power
        distinct = np.unique(np.real(points).astype(np.int32))[1:-1]
        steps = [0] + [int(value) + center for value in distinct]
        if len(steps) == num_refreshes:
            return tuple(steps)
        power -= 0.02
    raise PolicyError(
        f"nonuniform: no power above 1 gives {num_refreshes} distinct refresh steps over "
        f"{num_steps} steps around center {center}; lower 'center' or raise 'interval'"
    )


@register_policy
class NonUniformPolicy(Policy):
    """As many refreshes as ``uniform`` with the same interval, crowded around ``center``.

    DeepCache's non-uniform schedule: features change fastest in the middle of sampling,
    so refreshes are spent there. Needs the number of steps (from the scheduler, or
    ``num_steps`` in the config for a bare model).
    """

    kind: Literal["nonuniform"] = "nonuniform"
    interval: int = Field(3, strict=True, ge=1, description="Sets the budget: ceil(num_steps / interval) refreshes.")
    center: int = Field(15, strict=True, ge=0, description="The step refreshes crowd around.")
    power: float = Field(
        1.4, strict=True, gt=1.0, le=4.0, description="Starting power of the spacing; higher crowds more."
    )

    def refresh_steps(self, num_steps: int) -> list[int]:
        budget = math.ceil(num_steps / self.interval)
        if budget >= num_steps:
            return list(range(num_steps))
        return list(quadratic_center_steps(num_steps, budget, self.center, self.power))

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        if step.num_steps is None:
            raise PolicyError(
                "the nonuniform policy needs the number of steps: enable cachekit on a pipeline "
                "with a scheduler, or set 'num_steps' in the config for a bare model"
            )
        return step.index in self.refresh_steps(step.num_steps)
