"""``forecast: hermite``: the Taylor forecast on a scaled Hermite basis, damped at long gaps (HiCache).

HiCache observes that the differences a Taylor forecast extrapolates behave like Gaussian
noise around a trend, and replaces the powers ``delta ** k`` of the Taylor expansion (around
the latest refresh, ``delta`` steps past it) by scaled physicists' Hermite polynomials
``scale ** k * H_k(scale * delta)``. Their leading term is ``(2 * scale ** 2) ** k * delta ** k``:
with ``scale`` below ``1 / sqrt(2)`` every order is damped, the higher ones more, so a
forecast over a long gap bends back towards the latest result instead of running away, and
the lower-order terms ``H_k`` carries pull the other way. ``delta`` is counted in steps, as
HiCache counts it. The expansion's coefficients are the same Newton divided differences as
``taylor``'s (:mod:`cachekit.reuse.newton`).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from cachekit.reuse.forecaster import register_forecaster
from cachekit.reuse.taylor import TaylorForecast, TaylorOptions


class HermiteOptions(TaylorOptions):
    """``forecast: {name: hermite, order: 2, scale: 0.65}``.

    The default scale 0.65 damps order ``k`` by ``0.845 ** k``: on the shipped digits models,
    five refreshes of 50 steps, it beat HiCache's 0.5 at order 2 by 0.4 dB PSNR (see the docs'
    Reuse strategies page).
    """

    scale: float = Field(
        0.65,
        gt=0.0,
        le=1 / math.sqrt(2),
        description="Contraction of the Hermite basis; 1/sqrt(2) keeps Taylor's leading terms, less damps them.",
    )

    def label(self, name: str) -> str:
        return f"{name}{self.order}(scale={self.scale:g})"


class HermiteForecast(TaylorForecast):
    """Keeps the last ``order + 1`` results per row; serves their expansion on a scaled Hermite basis."""

    Options = HermiteOptions

    def __init__(self, order: int, scale: float) -> None:
        super().__init__(order)
        self.scale = scale

    def basis(self, delta: torch.Tensor, count: int) -> torch.Tensor:
        """``scale ** k * H_k(scale * delta)`` for ``k < count`` (``H_0 = 1``, ``H_1 = 2 y``,
        ``H_{k+1} = 2 y H_k - 2 k H_{k-1}``)."""
        y = self.scale * delta
        hermite = [torch.ones_like(y), 2 * y]
        for k in range(1, count - 1):
            hermite.append(2 * y * hermite[k] - 2 * k * hermite[k - 1])
        return torch.stack([self.scale**k * hermite[k] for k in range(count)], dim=-1)


register_forecaster("hermite", HermiteForecast)
