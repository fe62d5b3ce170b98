"""Experiment configs: which model, how to sample, and the cache settings to compare.

An :class:`ExperimentConfig` is read from YAML, TOML or JSON by :func:`load_experiment`.
Its ``model`` section is a :class:`~cachekit.experiments.model_spec.ModelSpec`; its
``policies`` list holds entries that each expand into one or more named settings (see
:mod:`cachekit.experiments.entries`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cachekit.config import CacheConfig, read_mapping, validate
from cachekit.errors import ConfigError, listing
from cachekit.experiments.calibration import CalibrationSpec, Tuning, check_apart
from cachekit.experiments.entries import PolicyEntry, Setting
from cachekit.experiments.hooks import experiment_plugins
from cachekit.experiments.model_spec import ModelSpec
from cachekit.policies.calibrated import CalibratedPolicy

BASELINE = "none"
"""Name of the uncached baseline setting, run first in every experiment."""

NOISE_FLOOR = "none (seeds B)"
"""Name of the uncached run on a second, disjoint seed set (``sampling.noise_floor``)."""

DEMO_EXPERIMENT: dict[str, Any] = {
    "name": "demo",
    "model": {"source": "digits-unet"},
    "sampling": {"steps": 50, "num_samples": 128, "batch_size": 16},
    "policies": [
        {"grid": {"interval": [2, 3, 5]}, "branch": 0},
        {"kind": "nonuniform", "interval": 5, "center": 10, "power": 2.0, "branch": 0},
    ],
}
"""The experiment ``cachekit demo`` runs: DeepCache's schedules on the shipped digits UNet, DDIM 50 steps.

Batches of 16: each setting's speedup is timed on its first batch in interleaved rounds, so a
small batch keeps the demo short."""


class SamplingSpec(BaseModel):
    """How each setting samples: steps, seeds, batch size and the pipeline's inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(50, ge=1, description="Denoising steps.")
    num_samples: int = Field(16, ge=1, description="Samples per setting; sample i uses seed 'seed + i'.")
    seed: int = Field(0, ge=0, description="Seed of the first sample.")
    seeds: tuple[int, ...] | None = Field(
        None, min_length=1, description="Explicit seeds (overrides num_samples, seed)."
    )
    batch_size: int = Field(16, ge=1, description="Samples per pipeline call.")
    prompts: tuple[str, ...] | None = Field(
        None, min_length=1, description="Text prompts; sample i uses prompts[i % len]."
    )
    class_labels: tuple[int, ...] | None = Field(
        None, min_length=1, description="Class labels; sample i uses class_labels[i % len]."
    )
    call: dict[str, Any] = Field(
        default_factory=dict, description="Extra pipeline call arguments (guidance_scale, eta, height, ...)."
    )
    noise_floor: bool = Field(
        False,
        description="Also run the uncached model on a second, disjoint seed set to measure run-to-run noise.",
    )

    @model_validator(mode="after")
    def _one_input(self) -> SamplingSpec:
        if self.prompts is not None and self.class_labels is not None:
            raise ValueError("give at most one of 'prompts' and 'class_labels'")
        return self

    def seed_list(self, second_set: bool = False) -> list[int]:
        """The seeds of every sample; ``second_set`` gives as many, disjoint from the first."""
        seeds = list(self.seeds) if self.seeds is not None else [self.seed + i for i in range(self.num_samples)]
        if not second_set:
            return seeds
        start = max(seeds) + 1
        return list(range(start, start + len(seeds)))


class TimingSpec(BaseModel):
    """How speedups are measured: interleaved rounds of one batch, on CPU time or CUDA events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repeats: int = Field(
        3,
        ge=3,
        description=(
            "Timed rounds of the first batch of each setting, uncached and cached in turn (A B A B ...); "
            "the speedup is their median, shown with the min-max spread of the rounds."
        ),
    )
    threads: int = Field(
        1,
        ge=1,
        description=(
            "Torch CPU threads for the whole run. With one, a loop is timed by the sampling thread's CPU "
            "time; with more, by the process's."
        ),
    )
    ceiling_margin: float = Field(
        0.1,
        ge=0,
        description=(
            "How far (a fraction) a speedup may exceed its FLOP ceiling (1 / FLOPs share), beyond its "
            "spread, before it is marked noisy: skipped modules also save per-call overhead FLOPs do not count."
        ),
    )


class PlotSpec(BaseModel):
    """What the speed-fidelity plot shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fidelity: str = Field(
        "auto", min_length=1, description="Metric on the y axis: 'psnr', 'ssim', 'relative_l1', 'fd', ... or 'auto'."
    )
    grid_samples: int = Field(16, ge=1, le=256, description="Samples shown in each setting's PNG grid.")


class ExperimentConfig(BaseModel):
    """A policy experiment: the uncached baseline and each setting, on one model and seed set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1, description="Experiment name (default: the config file's stem).")
    output_dir: str | None = Field(None, description="Where results go (default: 'runs/<name>'; --out overrides).")
    model: ModelSpec = Field(description="The model to sample from.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Steps, seeds, batch and inputs.")
    timing: TimingSpec = Field(default_factory=TimingSpec, description="How speedups are measured.")
    policies: list[PolicyEntry] = Field(min_length=1, description="Settings to compare with the baseline.")
    plot: PlotSpec = Field(default_factory=PlotSpec, description="The speed-fidelity plot and sample grids.")
    calibration: CalibrationSpec | None = Field(
        None, description="Tuning samples for cachekit calibrate and for 'kind: calibrated' entries with a budget."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentConfig:
        names = [setting.name for setting in self.settings]
        taken = {name for name in names if names.count(name) > 1 or name in (BASELINE, NOISE_FLOOR)}
        if taken:
            raise ValueError(
                f"setting names {listing(taken)} appear twice or are reserved; give entries distinct 'name's"
            )
        return self

    @model_validator(mode="after")
    def _tuning_apart(self) -> ExperimentConfig:
        sampling = self.sampling
        if self.calibration is not None:
            evaluation = sampling.seed_list() + (sampling.seed_list(second_set=True) if sampling.noise_floor else [])
            check_apart(self.calibration.seed_list(), evaluation)
        elif any(setting.cache is not None and needs_tuning(setting.cache) for setting in self.settings):
            raise ValueError("a 'kind: calibrated' entry with a budget and no file needs a 'calibration' section")
        return self

    def tuning(self) -> Tuning:
        """How the ``calibration`` section samples: its seeds, the sampling's steps, inputs and call options."""
        if self.calibration is None:
            raise ConfigError("this experiment config has no 'calibration' section naming tuning seeds")
        spec, sampling = self.calibration, self.sampling
        has_own_inputs = spec.prompts is not None or spec.class_labels is not None
        return Tuning(
            spec,
            sampling.steps,
            spec.batch_size or sampling.batch_size,
            spec.prompts if has_own_inputs else sampling.prompts,
            spec.class_labels if has_own_inputs else sampling.class_labels,
            sampling.call,
        )

    @field_validator("sampling")
    @classmethod
    def _call_leaves_the_caller_its_arguments(cls, sampling: SamplingSpec, info: ValidationInfo) -> SamplingSpec:
        """``sampling.call`` may not set what the model's pipeline caller sets itself."""
        model = info.data.get("model")
        if model is None:  # the model section is invalid, and reported on its own
            return sampling
        caller = experiment_plugins().hook.cachekit_experiment_caller(spec=model)
        clash = set(sampling.call) & (caller.reserved if caller is not None else set())
        if clash:
            raise ValueError(f"'call' may not set {listing(clash)}: the runner sets them (use steps, seeds, prompts)")
        return sampling

    @property
    def settings(self) -> list[Setting]:
        """Every cached setting, in config order (the baseline is not included)."""
        return [setting for entry in self.policies for setting in entry.settings]

    def resolved_output_dir(self) -> Path:
        """The output folder: ``output_dir``, else ``runs/<name>``."""
        return Path(self.output_dir or f"runs/{self.name or 'experiment'}")


def needs_tuning(cache: CacheConfig) -> bool:
    """Whether ``cache`` has a ``kind: calibrated`` policy with a budget and no file (calibrated by the runner)."""
    policies = [cache.policy, *cache.region_policies.values(), *cache.denoiser_policies.values()]
    return any(isinstance(policy, CalibratedPolicy) and policy.file is None for policy in policies)


def load_experiment(source: ExperimentConfig | Mapping[str, Any] | str | Path) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a model, a mapping or a YAML/TOML/JSON file.

    A file's stem becomes the experiment name when the file gives none.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid (each bad
            path named, e.g. ``policies.0.interval``).
    """
    if isinstance(source, ExperimentConfig):
        return source
    if isinstance(source, Mapping):
        return validate(ExperimentConfig, dict(source), "experiment config")
    if not isinstance(source, (str, Path)):
        raise ConfigError(
            f"cannot read an experiment config from {type(source).__name__}; give a mapping or a .yaml/.toml/.json path"
        )
    data = read_mapping(source)
    data.setdefault("name", Path(source).stem)
    return validate(ExperimentConfig, data, repr(str(source)))
