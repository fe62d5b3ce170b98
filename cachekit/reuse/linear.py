"""``forecast: linear``: reuse steps extrapolate the last two refreshes (TaylorSeer's first order).

With results ``f0`` at step ``s0`` and ``f1`` at step ``s1``, step ``s`` is served
``f1 + (s - s1) / (s1 - s0) * (f1 - f0)``. Until a row has refreshed twice it is served
``f1`` as stored. Rows refreshed at different steps (per-sample decisions) each use their
own two refresh steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cachekit.reuse.forecaster import Forecaster, register_forecaster
from cachekit.reuse.tree import merge_rows, nbytes, row_mask, tree_map

Steps = int | torch.Tensor | None
"""A refresh step: one for every row (an int), one per row (a float tensor, NaN for none), or none yet."""


def forecast_ratio(step: int, previous: int | None, latest: int | None) -> float | None:
    """``(step - s1) / (s1 - s0)`` for the refresh steps ``s0`` and ``s1``; ``None`` unless both exist."""
    if previous is None or latest is None:
        return None
    return (step - latest) / (latest - previous)


def extrapolate(latest: Any, previous: Any, ratio: float | torch.Tensor) -> Any:
    """``latest + ratio * (latest - previous)`` for every floating-point tensor in ``latest``.

    ``ratio`` is one number, or one per batch row (NaN where a row has no ``previous``: that
    row is served ``latest``). Tuples, lists and dicts (their subclasses kept) are walked in
    step with ``previous``; anything else (``None``, integer tensors, tensors whose shape
    changed) is served from ``latest`` unchanged.
    """

    def leaf(f1: torch.Tensor, f0: torch.Tensor | None) -> torch.Tensor:
        if f0 is None or not f1.is_floating_point() or f0.shape != f1.shape:
            return f1
        if not isinstance(ratio, torch.Tensor):
            return torch.lerp(f0, f1, 1.0 + ratio)
        known = row_mask(~ratio.isnan(), f1)
        if known is None:
            return f1
        weight = (1.0 + ratio.nan_to_num(0.0)).to(device=f1.device, dtype=f1.dtype).view(known.shape)
        return torch.where(known, torch.lerp(f0, f1, weight), f1)

    return tree_map(leaf, latest, previous)


def _rows(steps: Steps, size: int) -> torch.Tensor:
    """``steps`` as one float per row (NaN for none)."""
    if isinstance(steps, torch.Tensor):
        return steps
    return torch.full((size,), math.nan if steps is None else float(steps), dtype=torch.float64)


def _merge_steps(rows: torch.Tensor, new: Steps, old: Steps) -> torch.Tensor:
    return torch.where(rows, _rows(new, len(rows)), _rows(old, len(rows)))


def _common(steps: Steps) -> float | None:
    """The step every row shares (NaN: none has one), or ``None`` when rows differ."""
    if not isinstance(steps, torch.Tensor):
        return math.nan if steps is None else float(steps)
    first = steps[0]
    same = bool(((steps == first) | (steps.isnan() & first.isnan())).all())
    return float(first) if same else None


class LinearForecast(Forecaster):
    """Keeps the results of the last two refreshes and extrapolates them along the steps."""

    def __init__(self) -> None:
        self.latest: Any = None
        self.previous: Any = None
        self.latest_step: Steps = None
        self.previous_step: Steps = None

    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        if rows is None or self.latest is None:
            self.previous, self.previous_step = self.latest, self.latest_step
            self.latest, self.latest_step = value, step
            return
        before = self.latest if self.previous is None else self.previous  # a placeholder where rows have none
        self.previous = merge_rows(rows, self.latest, before)
        self.previous_step = _merge_steps(rows, self.latest_step, self.previous_step)
        self.latest = merge_rows(rows, value, self.latest)
        self.latest_step = _merge_steps(rows, step, self.latest_step)

    def serve(self, step: int) -> Any:
        if self.previous is None:
            return self.latest
        s1, s0 = _common(self.latest_step), _common(self.previous_step)
        if s1 is not None and s0 is not None:  # every row refreshed at the same steps
            ratio = None if math.isnan(s0) else forecast_ratio(step, s0, s1)
            return self.latest if ratio is None else extrapolate(self.latest, self.previous, ratio)
        size = next(len(s) for s in (self.latest_step, self.previous_step) if isinstance(s, torch.Tensor))
        latest, previous = _rows(self.latest_step, size), _rows(self.previous_step, size)
        return extrapolate(self.latest, self.previous, (step - latest) / (latest - previous))

    def nbytes(self) -> int:
        return nbytes(self.latest, self.previous)


register_forecaster("linear", LinearForecast)
