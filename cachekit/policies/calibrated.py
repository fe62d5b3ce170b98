"""``calibrated``: refresh at the steps a calibration file chose for each region.

When the policy is installed (:meth:`~cachekit.policies.base.Policy.bind`) the file is
checked against where it runs: the denoiser's class and configuration hash, the set of
regions installed on it, and the forecaster. Each region then refreshes at its own steps;
a generation of another step count is an error unless ``remap`` maps the steps onto it
(:func:`~cachekit.policies.remap.remap_steps`). Without a ``file``, a ``budget`` marks the
policy for ``cachekit run`` to calibrate on its tuning seeds first (and ``search`` refines
that schedule against the output, see :mod:`~cachekit.calibration.search`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from cachekit.calibration.budget import Budget
from cachekit.calibration.checks import check_model, denoiser_regions, region_key
from cachekit.calibration.file import CalibrationFile
from cachekit.calibration.search import Search
from cachekit.clock import StepInfo
from cachekit.errors import ConfigError, PolicyError, listing
from cachekit.policies.base import Policy, PolicyBinding, PolicyState, register_policy
from cachekit.policies.schedule import planned_steps


@register_policy
class CalibratedPolicy(Policy):
    """Refresh each region at the steps its calibration file chose (see the module docs)."""

    kind: Literal["calibrated"] = "calibrated"
    file: str | None = Field(None, min_length=1, description="The calibration JSON written by cachekit calibrate.")
    budget: Budget | None = Field(
        None, description="Without a file: what cachekit run calibrates for on the tuning seeds."
    )
    search: Search | None = Field(
        None, description="Without a file: refine the calibrated schedule against the tuning samples' output."
    )
    remap: bool = Field(False, description="Map the schedule onto another number of steps instead of failing.")
    _steps: tuple[int, ...] | None = PrivateAttr(None)
    _num_steps: int | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _file_or_budget(self) -> CalibratedPolicy:
        if self.file is None and self.budget is None:
            raise ValueError("give 'file' (a calibration written by cachekit calibrate) or 'budget' (in cachekit run)")
        if self.search is not None and self.file is not None:
            raise ValueError("'search' refines a schedule cachekit run calibrates: give it with 'budget', not 'file'")
        return self

    def bind(self, binding: PolicyBinding) -> CalibratedPolicy:
        if self.file is None:
            raise ConfigError(
                f"a calibrated policy with budget {self.budget} and no file is calibrated by cachekit run (on the "
                "config's calibration seeds); elsewhere give the file cachekit calibrate wrote"
            )
        calibration = CalibrationFile.load(self.file)
        region = check_binding(calibration, binding, self.file)
        bound = self.model_copy()
        bound._steps = calibration.regions[region].schedule.steps
        bound._num_steps = calibration.num_steps
        return bound

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        return step.index in self._planned(step.num_steps)

    def refresh_steps(self, num_steps: int) -> list[int]:
        return sorted(self._planned(num_steps))

    def _planned(self, num_steps: int | None) -> frozenset[int]:
        if self._steps is None:
            raise PolicyError("a calibrated policy knows its steps only once installed by cachekit.enable")
        return planned_steps(self._steps, self._num_steps, num_steps, self.remap, f"calibration {self.file!r}")


def check_binding(calibration: CalibrationFile, binding: PolicyBinding, path: str) -> str:
    """The file's key of ``binding``'s region, once the model, region set and forecaster match.

    Raises:
        ConfigError: the file is for another model, region set or forecaster; the message
            names what differs.
    """
    denoiser = binding.denoiser
    check_model(calibration, denoiser, path)
    calibrated = denoiser_regions(calibration, denoiser.name).values()
    if sorted(calibrated) != sorted(binding.regions):
        raise ConfigError(
            f"calibration {path!r} is for regions {listing(calibrated)} of {denoiser.name!r}, and this "
            f"config installs {listing(binding.regions)}; select the same regions or calibrate these"
        )
    if calibration.forecast != binding.forecast:
        written = calibration.forecast.model_dump(mode="json")
        raise ConfigError(
            f"calibration {path!r} chose its steps for forecast {calibration.forecast.label!r}, and this config "
            f"serves reuse steps with {binding.forecast.label!r}; set forecast: {written}, or calibrate for it"
        )
    return region_key(calibration, denoiser.name, binding.region.name, path)
