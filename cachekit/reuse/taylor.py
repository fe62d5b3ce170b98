"""``forecast: taylor``: the polynomial through the last ``order + 1`` refreshes, extrapolated (TaylorSeer).

TaylorSeer forecasts a feature by a Taylor expansion whose derivatives are finite
differences of the last refreshes. Here the differences are Newton divided differences over
the refresh steps themselves, so the forecast is the interpolating polynomial through the
last ``order + 1`` refreshes, exact when the feature is a polynomial of degree ``order`` or
less, at any gaps between refreshes (non-uniform and adaptive schedules have unequal ones).
A row with fewer refreshes so far uses the highest order it has (a row refreshed once is
served that result as stored). ``forecast: linear`` is order 1.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from cachekit.reuse.forecaster import Forecaster, ForecasterOptions, register_forecaster
from cachekit.reuse.history import RefreshHistory
from cachekit.reuse.newton import powers, weights

MAX_ORDER = 3
"""The highest order ``taylor`` accepts: beyond it the extrapolation of four refreshes overshoots."""


class TaylorOptions(ForecasterOptions):
    """``forecast: {name: taylor, order: 2}``."""

    order: int = Field(2, strict=True, ge=1, le=MAX_ORDER, description="Polynomial degree; keeps order+1 results.")

    def label(self, name: str) -> str:
        return f"{name}{self.order}"


class TaylorForecast(Forecaster):
    """Keeps the last ``order + 1`` results per row and serves their polynomial at the reuse step."""

    Options = TaylorOptions

    def __init__(self, order: int) -> None:
        self.order = order
        self.history = RefreshHistory(order + 1)

    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        self.history.record(step, value, rows)

    def serve(self, step: int) -> Any:
        return self.history.combine(lambda nodes: weights(nodes, step, self.basis))

    def nbytes(self) -> int:
        return self.history.nbytes()

    def basis(self, delta: torch.Tensor, count: int) -> torch.Tensor:
        """What stands in for the powers of ``delta``, the steps past the latest refresh: the powers."""
        return powers(delta, count)


register_forecaster("taylor", TaylorForecast)
