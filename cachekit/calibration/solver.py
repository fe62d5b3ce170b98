"""Choosing refresh steps from an error model: dynamic programming over steps.

In the spirit of SmoothCache and LeMiCa: the error of a schedule is a sum (or, for the
worst-case objective, a maximum) over its reuse steps of the error of serving each one,
and that error depends only on the last two refreshes before it (the state of
:mod:`~cachekit.calibration.error_model`). So the best schedule with ``c`` refreshes ending
in state ``(p, i)`` extends a best schedule with ``c - 1`` refreshes ending in some
``(q, p)``: ``cost[c][p, i] = min_q cost[c - 1][q, p] (+ or max) segment[q, p, i]``, where
``segment[q, p, i]`` is the error of the steps between refreshes ``p`` and ``i`` served from
``(q, p)``. Each refresh count costs ``O(steps^3)``; step 0 always refreshes.

For an error budget the refresh counts are tried from 1 up and the first whose best
schedule stays within the budget is taken (``steps`` refreshes always do: no reuse, no error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cachekit.calibration.budget import Budget


@dataclass(frozen=True)
class Solution:
    """A schedule and its errors under the error model."""

    steps: tuple[int, ...]
    """Refresh steps, step 0 first."""
    step_errors: tuple[float, ...]
    """The error of each step (0 at refresh steps)."""

    @property
    def total(self) -> float:
        """Sum of the errors of the reuse steps."""
        return float(sum(self.step_errors))

    @property
    def worst(self) -> float:
        """The largest error of a reuse step (0 with none)."""
        return float(max(self.step_errors, default=0.0))

    def cost(self, objective: str) -> float:
        """``total`` or ``worst``."""
        return self.total if objective == "total" else self.worst


def segments(steps: Sequence[int], count: int) -> list[tuple[int, int, int]]:
    """``(previous, latest, end)`` for each refresh of the schedule ``steps`` (step 0 added) over
    ``count`` steps: the refresh before (``count`` for none, an error table's row), the refresh,
    and the step after its last reuse (``end == latest + 1``: no reuse)."""
    refreshes = sorted({0, *steps})
    ends = [*refreshes[1:], count]
    return list(zip([count, *refreshes[:-1]], refreshes, ends, strict=True))


def schedule_errors(table: np.ndarray, steps: Sequence[int]) -> Solution:
    """The errors of the schedule ``steps`` (step 0 added) under ``table``."""
    count = table.shape[1]
    errors = [0.0] * count
    for previous, latest, end in segments(steps, count):
        for step in range(latest + 1, end):
            errors[step] = float(table[previous, latest, step])
    return Solution(tuple(sorted({0, *steps})), tuple(errors))


def _segments(table: np.ndarray, objective: str) -> np.ndarray:
    """``segment[p, i, k]``: the error of steps ``i+1 .. k-1`` served from state ``(p, i)``, ``k`` up to ``steps``."""
    count = table.shape[1]
    errors = np.nan_to_num(table, nan=0.0)
    upper = np.triu(np.ones((count, count), dtype=bool), k=1)
    errors = np.where(upper[None], errors, 0.0)
    if objective == "total":
        running = np.concatenate([np.zeros((count + 1, count, 1)), np.cumsum(errors, axis=2)], axis=2)
    else:
        running = np.concatenate([np.zeros((count + 1, count, 1)), np.maximum.accumulate(errors, axis=2)], axis=2)
    return running  # running[p, i, k] covers served steps j < k, and those up to i are 0


def _reachable(count: int) -> np.ndarray:
    """States ``(p, i)`` a schedule can be in: ``p < i``, or no ``p`` (index ``count``) with ``i = 0``."""
    valid = np.zeros((count + 1, count), dtype=bool)
    valid[:count] = np.triu(np.ones((count, count), dtype=bool), k=1)
    valid[count, 0] = True
    return valid


def best_schedules(table: np.ndarray, objective: str, most: int) -> list[Solution]:
    """The best schedule for each refresh count ``1 .. most``, under ``objective`` (``total`` or ``worst``)."""
    count = table.shape[1]
    combine = np.add if objective == "total" else np.maximum
    segment = _segments(table, objective)
    reachable = _reachable(count)
    later = np.triu(np.ones((count, count), dtype=bool), k=1)  # k > i
    cost = np.full((count + 1, count), np.inf)
    cost[count, 0] = 0.0
    back: list[np.ndarray] = []
    solutions = []
    for _ in range(min(most, count)):
        final = np.where(reachable, combine(cost, segment[:, :, count]), np.inf)
        previous, latest = np.unravel_index(int(np.argmin(final)), final.shape)
        steps = [int(latest)]
        state = (int(previous), int(latest))
        for links in reversed(back):
            if state[0] == count:
                break
            steps.append(state[0])
            state = (int(links[state]), state[0])
        solutions.append(schedule_errors(table, tuple(reversed(steps))))
        options = np.where(reachable[:, :, None], combine(cost[:, :, None], segment[:, :, :count]), np.inf)
        best = options.argmin(axis=0)  # over p, for each (i, k)
        grown = np.full((count + 1, count), np.inf)
        grown[:count] = np.where(later, np.take_along_axis(options, best[None], axis=0)[0], np.inf)
        back.append(np.vstack([best, np.zeros((1, count), dtype=best.dtype)]))
        cost = grown
    return solutions


def solve(table: np.ndarray, budget: Budget) -> Solution:
    """The schedule ``budget`` asks for under ``table``: least error for its refreshes, or fewest
    refreshes within its error."""
    count = table.shape[1]
    if budget.refreshes is not None:
        return best_schedules(table, budget.objective, min(budget.refreshes, count))[-1]
    for solution in best_schedules(table, budget.objective, count):
        if solution.cost(budget.objective) <= budget.error:
            return solution
    return schedule_errors(table, tuple(range(count)))
