"""How the cheap probe's drift maps to the real error of a reuse step.

The similarity policy adds up the probe's relative L1 drift from call to call and refreshes
once the sum reaches a threshold (TeaCache's rule). A hand-picked threshold does not carry
over to another model or step count: at twice the steps each step drifts about half as
much. What does carry over is the error the drift stands for. Calibration measures, for
every pair of steps ``i < j``, the mean drift accumulated from ``i`` to ``j`` and the mean
error of serving ``j`` from a refresh at ``i``, and fits ``error = scale * drift ** power``
by least squares on their logarithms (a power law: MagCache and TeaCache fit a curve of
the same kind per model). Accumulated drift measures how far the features moved, whatever
the step count, so an error budget gives one threshold, ``(budget / scale) ** (1 / power)``,
that holds at 20 steps as at 100.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cachekit.errors import CachekitError


class ProbeFit(BaseModel):
    """``error = scale * drift ** power`` for one region's probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = Field(description="The probe whose accumulated drift was fitted.")
    scale: float = Field(gt=0.0, description="Error at an accumulated drift of 1.")
    power: float = Field(gt=0.0, description="How fast the error grows with the drift.")
    r2: float = Field(description="Share of the variance of log error the fit explains (1 is perfect).")

    def error(self, drift: float) -> float:
        """The error an accumulated ``drift`` predicts."""
        return self.scale * drift**self.power

    def threshold(self, error: float) -> float:
        """The accumulated drift at which the predicted error reaches ``error``: a similarity threshold."""
        return (error / self.scale) ** (1.0 / self.power)


def accumulated_drift(step_drift: np.ndarray) -> np.ndarray:
    """``drift[i, j]``: the sum of the step drifts ``i+1 .. j`` (``step_drift[k]``: from step ``k-1`` to ``k``)."""
    steps = len(step_drift)
    running = np.concatenate([[0.0], np.cumsum(np.nan_to_num(step_drift[1:], nan=0.0))])
    drift = running[None, :] - running[:, None]
    return np.where(np.triu(np.ones((steps, steps), dtype=bool), k=1), drift, np.nan)


def fit_probe(probe: str, drift: np.ndarray, error: np.ndarray) -> ProbeFit:
    """Fit ``error = scale * drift ** power`` over the pairs where both are positive and finite.

    Raises:
        CachekitError: fewer than two such pairs, or a drift that never changes (nothing to fit).
    """
    keep = np.isfinite(drift) & np.isfinite(error) & (drift > 0) & (error > 0)
    x, y = np.log(drift[keep]), np.log(error[keep])
    if len(x) < 2 or np.ptp(x) == 0:
        raise CachekitError(
            f"calibration: probe {probe!r} drifted at {len(x)} step pairs only; nothing to fit its error to"
        )
    power, intercept = np.polyfit(x, y, 1)
    residual = y - (power * x + intercept)
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread else 1.0
    return ProbeFit(probe=probe, scale=float(np.exp(intercept)), power=max(float(power), 1e-6), r2=r2)
