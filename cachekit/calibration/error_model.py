"""The error model: how far a forecaster's reuse step lands from the true region result.

For one region and one forecaster, ``table[p, i, j]`` is the mean, over every recorded batch
row, of the relative L1 error ``mean|served_j - true_j| / mean|true|`` of serving step ``j``
when the last refresh was at step ``i`` and the one before it at step ``p`` (``p == steps``:
there was none, which happens only after step 0). The scale ``mean|true|`` is the row's mean
magnitude over the whole generation, not step ``j``'s own: a step whose result is small
(often the last) then counts for the little it changes, not for its ratio. It is measured by driving a real
:class:`~cachekit.reuse.forecaster.Forecaster` offline: record the true results of the
refresh steps, serve ``j``, compare with the true result at ``j``.

Two refreshes make the state: exact for forecasters that read at most the last two
refreshes (``none``, ``linear``). A forecaster that reads more (higher-order Taylor) is
also fed :data:`HISTORY` refreshes before ``p`` at ``p``'s own gap (``p - g``, ``p - 2g``
with ``g = i - p``, as many as lie at or after step 0): exact on evenly spaced schedules,
an approximation on others.

Forecasters are assumed to act elementwise (every built-in one does), so serving the
:class:`~cachekit.calibration.subsample.Subsample` of each step gives the subsample of what
would be served.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cachekit.calibration.drift_trust import DriftTrustMoments
from cachekit.reuse.forecaster import ForecasterFactory

HISTORY = 2
"""Refreshes fed before the last two, at their gap, for forecasters that read more than two."""


def history_steps(previous: int | None, latest: int) -> list[int]:
    """The refresh steps a forecaster is fed for the state ``(previous, latest)``, oldest first."""
    if previous is None:
        return [latest]
    gap = latest - previous
    earlier = [previous - k * gap for k in range(HISTORY, 0, -1) if previous - k * gap >= 0]
    return [*earlier, previous, latest]


def states(num_steps: int) -> Iterator[tuple[int | None, int]]:
    """Every state ``(previous, latest)`` a schedule that refreshes at step 0 can reach."""
    yield None, 0
    for latest in range(1, num_steps):
        for previous in range(latest):
            yield previous, latest


def serving_errors(
    trajectory: torch.Tensor, forecaster: ForecasterFactory, previous: int | None, latest: int
) -> torch.Tensor:
    """Each row's relative L1 error at steps ``latest + 1`` to the last, served by a fresh
    ``forecaster`` fed the refreshes of ``(previous, latest)``: ``(steps, rows)``.

    ``trajectory`` holds the true results, ``(steps, rows, size)``.
    """
    scale = trajectory.abs().mean(dim=(0, 2)).clamp_min(torch.finfo(torch.float32).tiny)
    instance = forecaster()
    for step in history_steps(previous, latest):
        instance.record(step, trajectory[step])
    errors = [
        (instance.serve(step) - trajectory[step]).abs().mean(-1) / scale for step in range(latest + 1, len(trajectory))
    ]
    return torch.stack(errors) if errors else torch.zeros(0, trajectory.shape[1])


class ErrorModel:
    """The running mean of ``table`` (see the module docs) for one region and one forecaster, and
    how each segment's error varies with the probe's drift across samples (``trust_moments``).

    Holds ``(steps + 1) * steps * steps`` float64 sums, whatever the model's size, and the
    moments' (:mod:`~cachekit.calibration.drift_trust`).
    """

    def __init__(self, num_steps: int, forecaster: ForecasterFactory):
        self.num_steps = num_steps
        self.forecaster = forecaster
        self.sums = np.zeros((num_steps + 1, num_steps, num_steps))
        self.rows = 0
        self.trust_moments = DriftTrustMoments(num_steps)

    def add(self, trajectory: torch.Tensor, drifts: torch.Tensor) -> None:
        """Add one generation's true results, ``(steps, rows, size)``, and probe drifts, ``(steps, rows)``."""
        if len(trajectory) != self.num_steps:
            raise ValueError(f"a trajectory of {len(trajectory)} steps, and this model is for {self.num_steps}")
        self.trust_moments.start(drifts)
        for previous, latest in states(self.num_steps):
            errors = serving_errors(trajectory, self.forecaster, previous, latest)
            row = self.num_steps if previous is None else previous
            self.sums[row, latest, latest + 1 :] += errors.double().sum(dim=1).numpy()
            self.trust_moments.add(row, latest, errors)
        self.rows += trajectory.shape[1]

    @property
    def table(self) -> np.ndarray:
        """The mean errors, NaN where no schedule can be in that state."""
        table = np.full_like(self.sums, np.nan)
        if not self.rows:
            return table
        for previous, latest in states(self.num_steps):
            row = self.num_steps if previous is None else previous
            table[row, latest, latest + 1 :] = self.sums[row, latest, latest + 1 :] / self.rows
        return table


def error_matrix(table: np.ndarray) -> np.ndarray:
    """``matrix[i, j]``: the error of serving ``j`` from a last refresh at ``i`` with the one before at
    ``i - 1`` (none for ``i = 0``); NaN for ``j <= i``. What the heatmap shows and the probe fit uses."""
    steps = table.shape[1]
    matrix = np.full((steps, steps), np.nan)
    for latest in range(steps):
        matrix[latest] = table[steps if latest == 0 else latest - 1, latest]
    return matrix
