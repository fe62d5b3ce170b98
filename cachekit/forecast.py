"""Forecasting reuse: what a reuse step serves, from the results of the last two refreshes.

Plain reuse (``"none"``, DeepCache, FORA) serves the latest stored result as it was
computed. ``"linear"`` extrapolates it along the steps, TaylorSeer's first order: with
results ``f0`` at step ``s0`` and ``f1`` at step ``s1``, step ``s`` is served
``f1 + (s - s1) / (s1 - s0) * (f1 - f0)``. Until a context has refreshed twice it serves
``f1`` as stored.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

Forecast = Literal["none", "linear"]
"""How a reuse step turns stored results into what it serves."""


def extrapolate(latest: Any, previous: Any, ratio: float) -> Any:
    """``latest + ratio * (latest - previous)`` for every floating-point tensor in ``latest``.

    Tuples, lists and dicts (their subclasses kept) are walked in step with ``previous``;
    anything else (``None``, integer tensors, tensors whose shape changed) is served from
    ``latest`` unchanged.
    """
    if isinstance(latest, torch.Tensor):
        if isinstance(previous, torch.Tensor) and latest.is_floating_point() and previous.shape == latest.shape:
            return torch.lerp(previous, latest, 1.0 + ratio)
        return latest
    if isinstance(latest, tuple | list) and isinstance(previous, tuple | list) and len(latest) == len(previous):
        items = [extrapolate(a, b, ratio) for a, b in zip(latest, previous, strict=True)]
        return type(latest)(*items) if hasattr(latest, "_fields") else type(latest)(items)  # namedtuples too
    if isinstance(latest, dict) and isinstance(previous, dict):
        served = copy.copy(latest)  # keeps dict subclasses such as diffusers' output classes
        for key, value in latest.items():
            served[key] = extrapolate(value, previous.get(key), ratio)
        return served
    return latest


def forecast_ratio(step: int, previous: int | None, latest: int | None) -> float | None:
    """``(step - s1) / (s1 - s0)`` for the refresh steps ``s0`` and ``s1``; ``None`` unless both exist."""
    if previous is None or latest is None:
        return None
    return (step - latest) / (latest - previous)
