"""The calibration file: one portable JSON document a ``kind: calibrated`` policy reads.

It says what it was measured on (each denoiser's class and configuration hash, the
scheduler, the number of steps, the regions), how reuse steps are served (the strategy: the
forecaster), what was asked (the budget), and what came out: per region the chosen refresh
steps, the error of each step under them, the uniform schedule with as many refreshes for
comparison, the error matrix (``errors[i][j]``: serving step ``j`` from a refresh at ``i``,
see :func:`~cachekit.calibration.error_model.error_matrix`; ``null`` where ``j <= i``) and the
probe fit and, for the chosen schedule, how far a sample's probe drift should move its
refreshes (the ``drift_trust`` an anchored ``adaptive`` policy reads); after a schedule search
(:mod:`~cachekit.calibration.search`) also the error
model's own pick and what the search measured. Errors are relative L1 of the region's
result (``mean|served - true|`` over the result's mean magnitude in the generation),
averaged over every calibration sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachekit.calibration.budget import Budget
from cachekit.calibration.probe_fit import ProbeFit
from cachekit.errors import ConfigError
from cachekit.reuse.spec import ForecastSpec

FORMAT = "cachekit-calibration"


class ModelInfo(BaseModel):
    """A denoiser's identity (see :mod:`cachekit.calibration.identity`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_name: str = Field(description="The denoiser's class.")
    config_hash: str = Field(description="Hash of its configuration (or of its parameter shapes).")


class ScheduleErrors(BaseModel):
    """A schedule and its errors under the error model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[int, ...] = Field(description="Refresh steps.")
    step_errors: tuple[float, ...] = Field(description="The error of each step (0 at refreshes).")
    total_error: float = Field(description="Sum of the reuse steps' errors.")
    worst_error: float = Field(description="The largest reuse step error.")


class DriftTrust(BaseModel):
    """How far a probe's drift should move the chosen schedule's refreshes per sample (see
    :mod:`~cachekit.calibration.drift_trust`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = Field(description="The probe whose drift was measured.")
    trust: float = Field(ge=0.0, le=1.0, description="The mean relative slope of segment error on drift, in [0, 1].")


class RegionCalibration(BaseModel):
    """What calibration chose and measured for one region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    denoiser: str = Field(description="The denoiser the region belongs to.")
    mode: str = Field(description="The region's reuse mode ('output' or 'residual').")
    schedule: ScheduleErrors = Field(description="The chosen refresh steps and their errors.")
    model_schedule: ScheduleErrors | None = Field(
        None, description="The error model's pick, where a schedule search then moved it (else None)."
    )
    uniform: ScheduleErrors = Field(description="Evenly spaced refreshes, as many, for comparison.")
    errors: list[list[float | None]] = Field(description="errors[i][j]: serving step j from a refresh at i.")
    probe_fit: ProbeFit | None = Field(None, description="The probe's drift fitted to the error, if it fitted.")
    drift_trust: DriftTrust | None = Field(
        None, description="An anchored adaptive policy's trust for the chosen schedule, if it fitted."
    )


class SearchRecord(BaseModel):
    """What a schedule search did: its settings, runs, and the output error before and after."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluations: int = Field(description="Runs of the tuning generations it made.")
    radius: int = Field(description="The most steps one refresh moved in one try.")
    start_output_error: float = Field(description="The error model's schedules: output error against uncached.")
    output_error: float = Field(description="The chosen schedules: relative squared error of the output.")


class CalibrationFile(BaseModel):
    """A calibration: what it was measured on, what was asked, what was chosen (see the module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["cachekit-calibration"] = FORMAT
    version: Literal[1] = 1
    models: dict[str, ModelInfo] = Field(description="Each calibrated denoiser's identity, by denoiser name.")
    scheduler: str | None = Field(description="The scheduler's class (None for a bare model).")
    num_steps: int = Field(ge=1, description="Steps per generation calibrated on.")
    strategy: dict[str, Any] = Field(description="How reuse steps are served: the config's forecast settings.")
    budget: Budget = Field(description="What the schedule optimises.")
    regions: dict[str, RegionCalibration] = Field(description="Per region (by stats name), in install order.")
    samples: dict[str, Any] = Field(
        default_factory=dict, description="What was sampled: rows, generations, sample size, seeds."
    )
    search: SearchRecord | None = Field(None, description="The schedule search, if one refined the schedules.")

    @property
    def forecast(self) -> ForecastSpec:
        """The forecast (forecaster and parameters) the schedules are for."""
        return ForecastSpec.model_validate(self.strategy.get("forecast", "none"))

    def save(self, path: str | Path) -> Path:
        """Write the file as indented JSON; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibrationFile:
        """Read a calibration file.

        Raises:
            ConfigError: the file is missing, is not JSON, or is not a cachekit calibration.
        """
        shown = repr(str(path))
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read calibration file {shown}: {error.strerror or error}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"calibration file {shown} is not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"{shown} is not a cachekit calibration file (format {found!r}, not {FORMAT!r}); "
                "write one with cachekit calibrate"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
            raise ConfigError(f"calibration file {shown} is invalid: {problems}") from None
