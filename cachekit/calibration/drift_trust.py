"""How far a sample's probe drift should move its refreshes: the trust of an anchored ``adaptive`` policy.

Anchored on a schedule, ``adaptive`` lets each sample's drift move its refreshes: a sample
that drifts more over a segment refreshes sooner. That pays only as far as the drift
predicts the segment's error. Calibration measures it across samples: for a segment (the
reuse steps after a refresh at ``latest``, the one before at ``previous``, up to ``end``)
each sample has an error (its relative L1 errors summed over the segment's steps, see
:mod:`~cachekit.calibration.error_model`) and a drift (the probe's step drifts summed over
the same steps). The least-squares slope of the error on the drift, both relative to their
means, says how much more a sample errs that drifts more: 1 when 10% more drift means 10%
more error, 0 when the drift says nothing. The trust of a schedule is the mean slope of its
segments, clipped to ``[0, 1]``.

Kept as running sums per state and end, like the error model's: ``2 * (steps + 1) * steps *
steps`` floats per forecaster (the sums of error and of error times drift) and ``2 * steps *
steps`` for the drift, however many samples are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cachekit.calibration.solver import segments


class DriftTrustMoments:
    """Running sums, over samples, of each segment's error and drift (see the module docs)."""

    def __init__(self, num_steps: int):
        self.num_steps = num_steps
        self.error_sums = np.zeros((num_steps + 1, num_steps, num_steps))
        self.product_sums = np.zeros((num_steps + 1, num_steps, num_steps))
        self.drift_sums = np.zeros((num_steps, num_steps))
        self.square_sums = np.zeros((num_steps, num_steps))
        self.rows = 0
        self._drift: torch.Tensor | None = None

    def start(self, drifts: torch.Tensor) -> None:
        """Begin a generation whose step drifts are ``drifts``, ``(steps, rows)`` (NaN: none)."""
        running = drifts.double().nan_to_num(0.0).cumsum(0)
        self._drift = running
        for latest in range(self.num_steps - 1):
            drift = running[latest + 1 :] - running[latest]
            self.drift_sums[latest, latest + 1 :] += drift.sum(1).numpy()
            self.square_sums[latest, latest + 1 :] += (drift * drift).sum(1).numpy()
        self.rows += drifts.shape[1]

    def add(self, row: int, latest: int, errors: torch.Tensor) -> None:
        """Fold in the state ``(row, latest)``'s errors at steps ``latest + 1`` on, ``(steps, rows)``."""
        if not len(errors):
            return
        assert self._drift is not None, "start() the generation first"
        segment_errors = errors.double().cumsum(0)
        drift = self._drift[latest + 1 :] - self._drift[latest]
        self.error_sums[row, latest, latest + 1 :] += segment_errors.sum(1).numpy()
        self.product_sums[row, latest, latest + 1 :] += (segment_errors * drift).sum(1).numpy()

    def slope(self, row: int, latest: int, end: int) -> float | None:
        """The relative slope of one segment's error on its drift (``None``: no spread to fit)."""
        if not self.rows:
            return None
        error = self.error_sums[row, latest, end] / self.rows
        drift = self.drift_sums[latest, end] / self.rows
        variance = self.square_sums[latest, end] / self.rows - drift * drift
        if error <= 0 or drift <= 0 or variance <= 1e-12 * drift * drift:
            return None
        covariance = self.product_sums[row, latest, end] / self.rows - error * drift
        return float(covariance * drift / (error * variance))

    def trust(self, steps: Sequence[int]) -> float | None:
        """The mean relative slope over ``steps``'s segments, clipped to ``[0, 1]`` (``None``: none fits)."""
        fits = (
            self.slope(row, latest, end - 1) for row, latest, end in segments(steps, self.num_steps) if end > latest + 1
        )
        slopes = [slope for slope in fits if slope is not None]
        return float(np.clip(np.mean(slopes), 0.0, 1.0)) if slopes else None
