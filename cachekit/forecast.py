"""Forecasting reuse: what a reuse step serves, from the results of the last two refreshes.

Plain reuse (``"none"``, DeepCache, FORA) serves the latest stored result as it was
computed. ``"linear"`` extrapolates it along the steps, TaylorSeer's first order: with
results ``f0`` at step ``s0`` and ``f1`` at step ``s1``, step ``s`` is served
``f1 + (s - s1) / (s1 - s0) * (f1 - f0)``. Until a context has refreshed twice it serves
``f1`` as stored.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

Forecast = Literal["none", "linear"]
"""How a reuse step turns stored results into what it serves."""


def extrapolate(latest: Any, previous: Any, ratio: float) -> Any:
    """``latest + ratio * (latest - previous)`` for every floating-point tensor in ``latest``.

    Tuples, lists and dicts are walked in step with ``previous``; anything else (``None``,
    integer tensors, tensors whose shape changed) is served from ``latest`` unchanged.
    """
    if isinstance(latest, torch.Tensor):
        if isinstance(previous, torch.Tensor) and latest.is_floating_point() and previous.shape == latest.shape:
            return torch.lerp(previous, latest, 1.0 + ratio)
        return latest
    if isinstance(latest, tuple | list) and isinstance(previous, tuple | list) and len(latest) == len(previous):
        return type(latest)(extrapolate(a, b, ratio) for a, b in zip(latest, previous, strict=True))
    if isinstance(latest, dict) and isinstance(previous, dict):
        return {key: extrapolate(value, previous.get(key), ratio) for key, value in latest.items()}
    return latest


def forecast_ratio(step: int, refresh_steps: tuple[int, ...]) -> float | None:
    """``(step - s1) / (s1 - s0)`` for the last two refresh steps, or ``None`` with fewer than two."""
    if len(refresh_steps) < 2:
        return None
    previous, latest = refresh_steps[-2:]
    return (step - latest) / (latest - previous)
