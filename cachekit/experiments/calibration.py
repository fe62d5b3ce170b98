"""Calibration from an experiment config: its ``calibration`` section, ``cachekit calibrate`` and
the sweep entries ``kind: calibrated`` with a budget and no file.

The section names the *tuning* seeds (and prompts or class labels) calibration samples,
uncached; they must not overlap the seeds the experiment evaluates on (``sampling``, and its
noise-floor set), so a calibrated schedule is always scored on held-out samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cachekit.calibration.budget import Budget
from cachekit.calibration.calibrate import calibrate_model
from cachekit.calibration.file import CalibrationFile
from cachekit.calibration.search import Search
from cachekit.config import CacheConfig
from cachekit.errors import ConfigError
from cachekit.experiments.caller import PipelineCaller, SampleRequest
from cachekit.experiments.entries import PolicyEntry


class CalibrationSpec(BaseModel):
    """The ``calibration`` section of an experiment config: tuning samples, what to calibrate, the budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: tuple[int, ...] | None = Field(None, min_length=1, description="Tuning seeds (overrides num_samples, seed).")
    num_samples: int = Field(32, ge=1, description="Tuning samples; sample i uses seed 'seed + i'.")
    seed: int | None = Field(None, ge=0, description="Seed of the first tuning sample (give it or 'seeds').")
    batch_size: int | None = Field(None, ge=1, description="Samples per pipeline call (default: sampling's).")
    prompts: tuple[str, ...] | None = Field(None, min_length=1, description="Prompts (default: sampling's).")
    class_labels: tuple[int, ...] | None = Field(None, min_length=1, description="Class labels (default: sampling's).")
    setting: dict[str, Any] = Field(
        default_factory=dict,
        description="What cachekit calibrate calibrates, as a policies entry without kind (regions, branch, forecast).",
    )
    budget: Budget | None = Field(None, description="What cachekit calibrate optimises ({refreshes: 5} or {error: 2}).")
    sample_size: int = Field(1024, ge=1, description="Values kept per sample, step and region (the memory bound).")
    probe: str = Field("entry_input", min_length=1, description="The probe whose drift is fitted to the error.")
    search: Search | None = Field(
        None,
        description="Refine the schedules against the samples ({evaluations: 100, radius: 4}); each evaluation "
        "samples the tuning seeds once.",
    )
    output: str | None = Field(None, description="Where cachekit calibrate writes the JSON (default: in output_dir).")

    @model_validator(mode="after")
    def _seeds_given(self) -> CalibrationSpec:
        if self.seeds is None and self.seed is None:
            raise ValueError("give the tuning seeds: 'seeds' or 'seed' (apart from the sampling seeds)")
        if "kind" in self.setting:
            raise ValueError("'setting' selects regions and forecast; it takes no 'kind' (the budget decides)")
        return self

    def seed_list(self) -> list[int]:
        """The tuning seeds, in order."""
        if self.seeds is not None:
            return list(self.seeds)
        assert self.seed is not None
        return [self.seed + index for index in range(self.num_samples)]

    def cache_config(self) -> CacheConfig:
        """The regions and forecast of ``setting``, as a cache config."""
        entry = PolicyEntry.model_validate({**self.setting, "kind": "uniform"})
        return entry.settings[0].cache  # type: ignore[return-value]


def check_apart(tuning: list[int], evaluation: list[int]) -> None:
    """Raise :class:`ConfigError` when tuning and evaluation seeds share any."""
    shared = sorted(set(tuning) & set(evaluation))
    if shared:
        shown = ", ".join(map(str, shared[:8])) + (", ..." if len(shared) > 8 else "")
        raise ConfigError(
            f"calibration seeds and evaluation seeds share {len(shared)} seeds ({shown}); a schedule must be "
            "scored on samples it was not tuned on: move calibration.seed(s) away from sampling's"
        )


def seed_range(seeds: list[int]) -> str:
    """``seeds`` for a message: ``10000-10511 (512 seeds)``, or the list when short and uneven."""
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]} ({len(seeds)} seeds)"
    return ", ".join(map(str, seeds))


@dataclass(frozen=True)
class Tuning:
    """How calibration samples: the tuning seeds, steps and inputs."""

    spec: CalibrationSpec
    steps: int
    batch_size: int
    prompts: tuple[str, ...] | None
    class_labels: tuple[int, ...] | None
    options: Mapping[str, Any]

    def requests(self) -> list[SampleRequest]:
        """The pipeline calls of the tuning samples."""
        seeds = self.spec.seed_list()
        requests = []
        for start in range(0, len(seeds), self.batch_size):
            index = range(start, min(start + self.batch_size, len(seeds)))
            requests.append(
                SampleRequest(
                    steps=self.steps,
                    seeds=[seeds[i] for i in index],
                    prompts=None if self.prompts is None else [self.prompts[i % len(self.prompts)] for i in index],
                    class_labels=None
                    if self.class_labels is None
                    else [self.class_labels[i % len(self.class_labels)] for i in index],
                    options=self.options,
                )
            )
        return requests

    def calibrate(
        self, pipeline: Any, caller: PipelineCaller, cache: CacheConfig, budget: Budget, search: Search | None = None
    ) -> CalibrationFile:
        """Calibrate ``cache``'s regions for ``cache.forecast`` on the tuning samples (searched with
        ``search``, else with the section's ``search``, if either is given)."""
        requests = self.requests()

        def generate() -> list[Any]:
            return [caller(pipeline, request) for request in requests]

        samples = {"seeds": self.spec.seed_list()}
        files = calibrate_model(
            pipeline,
            generate,
            budget,
            cache,
            sample_size=self.spec.sample_size,
            probe=self.spec.probe,
            samples=samples,
            search=search or self.spec.search,
        )
        return files[cache.forecast.label]


def default_output(output_dir: Path, name: str) -> Path:
    """Where a calibration of ``name`` goes inside an experiment's output folder."""
    safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in name).strip("_") or "calibration"
    return output_dir / "calibration" / f"{safe}.json"
