"""``cachekit calibrate`` and :func:`cachekit.calibrate`: calibrate from an experiment config.

The config's ``calibration`` section names the tuning samples, what to calibrate
(``setting``: regions and forecast, as a policies entry without ``kind``) and the
``budget``; the model and the number of steps come from the config's ``model`` and
``sampling`` sections. The result is a JSON file (the ``calibration.output``, else
``<output_dir>/calibration/calibration.json``) and its heatmap beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachekit.calibration.file import CalibrationFile
from cachekit.errors import ConfigError
from cachekit.experiments.calibration import default_output
from cachekit.experiments.calibration_plot import save_heatmap
from cachekit.experiments.config import ExperimentConfig, load_experiment
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.hooks import experiment_plugins, load_model


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` wrote: the calibration and where it and its heatmap are."""

    calibration: CalibrationFile
    path: Path
    heatmap: Path | None

    def summary(self) -> str:
        """The schedule of each region and its error beside the uniform one's, for the terminal."""
        calibration = self.calibration
        lines = [
            f"calibrated {len(calibration.regions)} region(s) over {calibration.num_steps} steps for forecast "
            f"{calibration.forecast!r}, budget: {calibration.budget}"
        ]
        for name, region in calibration.regions.items():
            chosen, uniform = region.schedule, region.uniform
            lines.append(
                f"  {name}: refresh at {list(chosen.steps)}  total error {chosen.total_error:.4g}, "
                f"worst {chosen.worst_error:.4g}  (uniform {list(uniform.steps)}: {uniform.total_error:.4g}, "
                f"worst {uniform.worst_error:.4g})"
            )
            if region.drift_trust is not None:
                trust = region.drift_trust
                lines.append(
                    f"    drift trust {trust.trust:.2f} on probe {trust.probe!r}: how far an adaptive policy "
                    "anchored on this file moves the schedule per sample"
                )
            if region.model_schedule is not None:
                lines.append(f"    (the error model picked {list(region.model_schedule.steps)}; the search moved it)")
        if calibration.search is not None:
            search = calibration.search
            lines.append(
                f"  schedule search: {search.evaluations} runs of the tuning samples, output error "
                f"{search.start_output_error:.4g} -> {search.output_error:.4g} (relative squared error)"
            )
        lines.append(f"use it: policy: {{kind: calibrated, file: {self.path}}}, forecast: {calibration.forecast}")
        lines.append(f"wrote {self.path}" + (f" and {self.heatmap}" if self.heatmap else ""))
        return "\n".join(lines)


def calibrate(
    config: ExperimentConfig | Mapping[str, Any] | str | Path,
    output: str | Path | None = None,
    plot: bool = True,
) -> CalibrationResult:
    """Calibrate the model of an experiment config on its ``calibration`` section's tuning samples.

    Args:
        config: an experiment config (model, mapping or file) with a ``calibration`` section
            giving ``budget`` and tuning seeds.
        output: the JSON file to write (default: ``calibration.output``, else
            ``<output_dir>/calibration/calibration.json``).
        plot: also write the heatmap (PNG, same name), which needs matplotlib.

    Raises:
        ConfigError: no ``calibration`` section, no budget, or tuning seeds that overlap the
            evaluation seeds.
    """
    experiment = load_experiment(config)
    tuning = experiment.tuning()
    spec = tuning.spec
    if spec.budget is None:
        raise ConfigError("calibration.budget is missing: give {refreshes: N} or {error: E}")
    path = Path(output or spec.output or default_output(experiment.resolved_output_dir(), "calibration"))
    model = experiment.model
    pipeline = load_model(model)
    caller = experiment_plugins().hook.cachekit_experiment_caller(spec=model)
    if caller is None:
        raise ExperimentError(f"no plugin knows how to call {type(pipeline).__name__} loaded from {model.label!r}")
    calibration = tuning.calibrate(pipeline, caller, spec.cache_config(), spec.budget)
    calibration.save(path)
    heatmap = save_heatmap(calibration, path.with_suffix(".png")) if plot else None
    return CalibrationResult(calibration, path, heatmap)
