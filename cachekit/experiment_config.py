"""Experiment configs: which model, how to sample, and the cache settings to compare.

An :class:`ExperimentConfig` is read from YAML, TOML or JSON by :func:`load_experiment`.
Its ``policies`` list holds entries that each expand into one or more named
:class:`Setting` s (a :class:`~cachekit.config.CacheConfig` and a name). An entry's keys
map onto a setting explicitly:

* ``kind``: the policy kind (default ``uniform``);
* any field of that kind (``interval``, ``threshold``, ``center``, ...): the policy field;
* ``branch: k``: the UNet region ``branch{k}`` (DeepCache's skip branch ``k``);
* ``regions``: region names (one name or a list), as in ``CacheConfig.regions``;
* ``forecast``: ``CacheConfig.forecast`` (``linear`` extrapolates reuse steps); named in
  the setting's name when it is not ``none``;
* ``cache``: any other ``CacheConfig`` keys (``declare``, ``num_steps``, ``denoisers``, ...);
* ``grid``: keys of the above mapped to lists of values; the entry expands into their
  cartesian product (``grid: {interval: [2, 3, 5], branch: [0, 1]}`` gives six settings).

Every expanded setting is validated as a ``CacheConfig`` when the experiment is loaded, so
a typo fails before any model is loaded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from cachekit.config import CacheConfig, read_mapping, validate
from cachekit.errors import ConfigError, did_you_mean, listing
from cachekit.policies.base import policy_kinds

BASELINE = "none"
"""Name of the uncached baseline setting, run first in every experiment."""

NOISE_FLOOR = "none (seeds B)"
"""Name of the uncached run on a second, disjoint seed set (``sampling.noise_floor``)."""

SETTING_KEYS = ("branch", "regions", "forecast", "cache")
"""Entry keys that select regions or set other cache options (the rest are policy fields)."""

_FORBIDDEN_CACHE_KEYS = ("policy", "regions", "forecast")


class ModelSpec(BaseModel):
    """The model to sample from: a shipped model, a local folder, a hub id, or a builder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(
        None,
        description="A shipped model name ('digits-unet', 'digits-dit'), a local folder, or a hub id.",
    )
    builder: str | None = Field(
        None, description="A tiny-model builder name (seeded random weights, no download), instead of source."
    )
    pipeline: str | None = Field(
        None, description="Pipeline class to load with, e.g. 'StableDiffusionPipeline' (default: as saved)."
    )
    scheduler: str | None = Field(
        None, description="Scheduler class to swap in, built from the pipeline's scheduler config ('DDIMScheduler')."
    )
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict, description="Scheduler config overrides, e.g. {timestep_spacing: trailing}."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for from_pretrained or the builder (variant, ...)."
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Weights and compute dtype.")
    device: str = Field("cpu", min_length=1, description="Torch device to run on ('cpu', 'cuda', 'cuda:1', 'mps').")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.source is None) == (self.builder is None):
            raise ValueError("give exactly one of 'source' (shipped name, folder or hub id) and 'builder'")
        return self

    @property
    def label(self) -> str:
        """The source or builder name, for messages and result files."""
        return self.source or f"builder:{self.builder}"


class SamplingSpec(BaseModel):
    """How each setting samples: steps, seeds, batch size and the pipeline's inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(50, ge=1, description="Denoising steps (num_inference_steps).")
    num_samples: int = Field(16, ge=1, description="Samples per setting; sample i uses seed 'seed + i'.")
    seed: int = Field(0, ge=0, description="Seed of the first sample.")
    seeds: tuple[int, ...] | None = Field(
        None, min_length=1, description="Explicit seeds (overrides num_samples, seed)."
    )
    batch_size: int = Field(16, ge=1, description="Samples per pipeline call.")
    prompts: tuple[str, ...] | None = Field(
        None, min_length=1, description="Text prompts; sample i uses prompts[i % len] (passed as 'prompt')."
    )
    class_labels: tuple[int, ...] | None = Field(
        None, min_length=1, description="Class labels; sample i uses class_labels[i % len] (passed as 'class_labels')."
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
        reserved = {"num_inference_steps", "generator", "output_type", "prompt", "class_labels", "batch_size"}
        clash = reserved & set(self.call)
        if clash:
            raise ValueError(f"'call' may not set {listing(clash)}: the runner sets them (use steps, seeds, prompts)")
        return self

    def seed_list(self, second_set: bool = False) -> list[int]:
        """The seeds of every sample; ``second_set`` gives as many, disjoint from the first."""
        seeds = list(self.seeds) if self.seeds is not None else [self.seed + i for i in range(self.num_samples)]
        if not second_set:
            return seeds
        start = max(seeds) + 1
        return list(range(start, start + len(seeds)))


class PlotSpec(BaseModel):
    """What the speed-fidelity plot shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fidelity: str = Field(
        "auto", min_length=1, description="Metric on the y axis: 'psnr', 'ssim', 'relative_l1', 'fd', ... or 'auto'."
    )
    grid_samples: int = Field(16, ge=1, le=256, description="Samples shown in each setting's PNG grid.")


@dataclass(frozen=True)
class Setting:
    """One run of an experiment: a name and its cache config (``None`` for no caching)."""

    name: str
    cache: CacheConfig | None


class PolicyEntry(BaseModel):
    """One item of ``policies``: a setting, or a ``grid`` of settings (see the module docs)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = Field(None, min_length=1, description="Setting name (a grid appends its values).")
    kind: str = Field("uniform", description="Policy kind.")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Keys mapped to lists of values to sweep.")
    branch: int | None = Field(None, ge=0, description="UNet skip branch k: caches region 'branch{k}'.")
    regions: list[str] | None = Field(None, min_length=1, description="Region names to cache.")
    forecast: str = Field("none", description="What reuse steps serve: 'none' (stored) or 'linear'.")
    cache: dict[str, Any] = Field(default_factory=dict, description="Other CacheConfig keys (declare, num_steps, ...).")

    _settings: list[Setting] = PrivateAttr(default_factory=list)

    @field_validator("regions", mode="before")
    @classmethod
    def _one_region(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in value.items() if not values]
        if empty:
            raise ValueError(f"grid keys {listing(empty)} have no values; give each a non-empty list")
        return value

    @model_validator(mode="after")
    def _expand(self) -> PolicyEntry:
        fixed = {key: getattr(self, key) for key in ("kind", *SETTING_KEYS) if key in self.model_fields_set}
        fixed.update(self.model_extra or {})
        both = set(fixed) & set(self.grid)
        if both:
            raise ValueError(f"{listing(both)} set both as a fixed key and in 'grid'; keep one")
        combos = [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]
        self._settings = [self._setting({**fixed, **combo}, combo) for combo in combos]
        return self

    def _setting(self, values: dict[str, Any], swept: dict[str, Any]) -> Setting:
        kind = values.pop("kind", "uniform")
        kinds = policy_kinds()
        if kind not in kinds:
            raise ValueError(
                f"unknown policy kind {kind!r}{did_you_mean(str(kind), kinds)}; known kinds: {listing(kinds)}"
            )
        cache = dict(values.pop("cache", {}))
        bad_cache = set(_FORBIDDEN_CACHE_KEYS) & set(cache)
        if bad_cache:
            raise ValueError(
                f"'cache' may not set {listing(bad_cache)}; use the entry's kind, policy fields, regions and forecast"
            )
        regions = _regions(values.pop("branch", None), values.pop("regions", None))
        forecast = values.pop("forecast", "none")
        policy_fields = set(kinds[kind].model_fields) - {"kind"}
        unknown = set(values) - policy_fields
        if unknown:
            allowed = ["kind", "name", "grid", *SETTING_KEYS, *sorted(policy_fields)]
            key = sorted(unknown)[0]
            raise ValueError(
                f"key {key!r} is not a field of policy kind {kind!r}{did_you_mean(key, allowed)}; "
                f"keys allowed here: {listing(allowed)}"
            )
        mapping = {**cache, "policy": {"kind": kind, **values}, "forecast": forecast}
        if regions is not None:
            mapping["regions"] = regions
        config = validate(CacheConfig, mapping, f"policies entry {self.name or kind!r}")
        return Setting(self._name(kind, values, regions, forecast, swept), config)

    def _name(
        self, kind: str, values: dict[str, Any], regions: list[str] | None, forecast: str, swept: dict[str, Any]
    ) -> str:
        if self.name is not None:
            suffix = ",".join(f"{key}={_short(value)}" for key, value in swept.items())
            return f"{self.name}[{suffix}]" if suffix else self.name
        parts = [kind, *(f"{key}={_short(value)}" for key, value in values.items())]
        if forecast != "none":
            parts.append(f"forecast={forecast}")
        if regions is not None:
            parts.append("@" + "+".join(regions))
        return " ".join(parts)

    @property
    def settings(self) -> list[Setting]:
        """The settings this entry expands into, in grid order."""
        return list(self._settings)


def _short(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _regions(branch: Any, regions: Any) -> list[str] | None:
    """Region names from ``branch`` (an int k -> 'branch{k}') and/or ``regions``."""
    names: list[str] = []
    if branch is not None:
        if isinstance(branch, bool) or not isinstance(branch, int) or branch < 0:
            raise ValueError(f"'branch' must be a skip-branch index 0, 1, 2, ... (got {branch!r})")
        names.append(f"branch{branch}")
    if regions is not None:
        names += [regions] if isinstance(regions, str) else list(regions)
    return names or None


class ExperimentConfig(BaseModel):
    """A policy experiment: the uncached baseline and each setting, on one model and seed set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1, description="Experiment name (default: the config file's stem).")
    output_dir: str | None = Field(None, description="Where results go (default: 'runs/<name>'; --out overrides).")
    model: ModelSpec = Field(description="The model to sample from.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Steps, seeds, batch and inputs.")
    policies: list[PolicyEntry] = Field(min_length=1, description="Settings to compare with the baseline.")
    plot: PlotSpec = Field(default_factory=PlotSpec, description="The speed-fidelity plot and sample grids.")

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentConfig:
        names = [setting.name for setting in self.settings]
        taken = {name for name in names if names.count(name) > 1 or name in (BASELINE, NOISE_FLOOR)}
        if taken:
            raise ValueError(
                f"setting names {listing(taken)} appear twice or are reserved; give entries distinct 'name's"
            )
        return self

    @property
    def settings(self) -> list[Setting]:
        """Every cached setting, in config order (the baseline is not included)."""
        return [setting for entry in self.policies for setting in entry.settings]

    def resolved_output_dir(self) -> Path:
        """The output folder: ``output_dir``, else ``runs/<name>``."""
        return Path(self.output_dir or f"runs/{self.name or 'experiment'}")


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
