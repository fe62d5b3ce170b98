"""Mapping a refresh schedule made for one number of steps onto another.

Step ``s`` of a schedule over ``n`` steps sits at the fraction ``s / n`` of sampling; on
``m`` steps it becomes ``round(s * m / n)``, so a refresh keeps its place in normalised time
(step 0 stays 0). Refreshes that land on one step are pulled apart: a later one moves to the
next free step, and one that would leave too few steps for those after it moves back just
enough, so the schedule keeps ``min(len(steps), m)`` refreshes, in order.
"""

from __future__ import annotations

from collections.abc import Sequence


def remap_steps(steps: Sequence[int], from_steps: int, to_steps: int) -> list[int]:
    """``steps`` (refresh steps over ``from_steps`` steps) placed on ``to_steps`` steps, as the module docs say."""
    if from_steps < 1 or to_steps < 1:
        raise ValueError(f"step counts must be at least 1, got {from_steps} and {to_steps}")
    wanted = [round(step * to_steps / from_steps) for step in sorted(set(steps))][:to_steps]
    placed: list[int] = []
    for index, step in enumerate(wanted):
        room = to_steps - (len(wanted) - index)  # the last step this refresh may take and leave room for the rest
        placed.append(min(max(step, placed[-1] + 1 if placed else 0), room))
    return placed
