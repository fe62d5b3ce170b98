"""The running statistics of one region over calibration generations.

Per forecaster an :class:`~cachekit.calibration.error_model.ErrorModel`, and the mean probe
drift of each step. A generation's trajectory is folded in and dropped, so what is kept is
``(steps + 1) * steps * steps`` floats per forecaster plus ``steps`` drifts, however many
generations are recorded; while one is recorded it holds ``steps * rows * sample_size``
floats (rows: the batch rows of one pipeline call).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cachekit.calibration.error_model import ErrorModel
from cachekit.calibration.recorder import Trajectory
from cachekit.errors import CachekitError
from cachekit.reuse.spec import ForecastSpec


class RegionStatistics:
    """Error models (one per forecast, by its label) and step drifts of one region."""

    def __init__(self, name: str, forecasts: Sequence[ForecastSpec]):
        self.name = name
        self.forecasts = tuple(forecasts)
        self.models: dict[str, ErrorModel] = {}
        self.drift_sums: np.ndarray | None = None
        self.drift_rows: np.ndarray | None = None
        self.generations = 0

    @property
    def num_steps(self) -> int | None:
        """The steps of the generations seen (``None`` before the first)."""
        return None if self.drift_sums is None else len(self.drift_sums)

    def add(self, trajectory: Trajectory) -> None:
        """Fold in one context's generation."""
        results, drifts = trajectory
        steps = len(results)
        if self.num_steps is None:
            self.models = {spec.label: ErrorModel(steps, spec.factory()) for spec in self.forecasts}
            self.drift_sums, self.drift_rows = np.zeros(steps), np.zeros(steps)
        elif steps != self.num_steps:
            raise CachekitError(
                f"calibration: region {self.name!r} ran {steps} steps in one generation and {self.num_steps} in "
                "another; calibrate on generations of one step count"
            )
        for model in self.models.values():
            model.add(results, drifts)
        assert self.drift_sums is not None and self.drift_rows is not None
        known = ~drifts.isnan()
        self.drift_sums += drifts.nan_to_num(0.0).double().sum(dim=1).numpy()
        self.drift_rows += known.sum(dim=1).numpy()
        self.generations += 1

    @property
    def step_drift(self) -> np.ndarray:
        """The mean drift of each step (NaN at step 0: nothing to drift from)."""
        assert self.drift_sums is not None and self.drift_rows is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.drift_rows > 0, self.drift_sums / self.drift_rows, np.nan)
