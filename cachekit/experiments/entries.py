"""The ``policies`` entries of an experiment config, each expanded into named :class:`Setting` s.

An entry's keys map onto a setting explicitly:

* ``kind``: the policy kind (default ``uniform``);
* any field of that kind (``interval``, ``threshold``, ``center``, ...): the policy field;
* ``regions``: region names (one name or a list), as in ``CacheConfig.regions``;
* ``forecast``: ``CacheConfig.forecast``, a name (``linear``) or a mapping with parameters
  (``{name: taylor, order: 2}``); named in the setting's name by its label (``forecast=taylor2``)
  when it is not ``none``;
* ``cache``: any other ``CacheConfig`` keys (``declare``, ``num_steps``, ``denoisers``, ...);
* a plugin's entry key (:class:`~cachekit.experiments.entry_key.EntryKey`): the UNet plugin's
  ``branch: k`` caches region ``branch{k}`` (DeepCache's skip branch ``k``);
* ``grid``: keys of the above mapped to lists of values; the entry expands into their
  cartesian product (``grid: {interval: [2, 3, 5], branch: [0, 1]}`` gives six settings).

Every expanded setting is validated as a ``CacheConfig`` when the experiment is loaded, so
a typo fails before any model is loaded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, field_validator, model_validator
from typing_extensions import TypedDict

from cachekit.config import CacheConfig, region_names, validate
from cachekit.errors import did_you_mean, listing
from cachekit.experiments.entry_key import EntryKey
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.hooks import entry_keys
from cachekit.policies.base import policy_kinds
from cachekit.reuse.spec import ForecastSpec

SETTING_KEYS = ("regions", "forecast", "cache")
"""Built-in entry keys that select regions or set other cache options (the rest are policy fields)."""

BUILTIN_KEYS = ("kind", "name", "grid", *SETTING_KEYS)
"""Every built-in entry key; a plugin's entry key may not reuse one."""

_ENTRY_OWN_KEYS = ("policy", "regions", "forecast")


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
    regions: list[str] | None = Field(None, min_length=1, description="Region names to cache.")
    forecast: str | dict[str, Any] = Field(
        "none",
        description="What reuse steps serve: a forecaster name ('none', 'linear', ...) or {name: ..., order: ...}.",
    )
    cache: dict[str, Any] = Field(default_factory=dict, description="Other CacheConfig keys (declare, num_steps, ...).")

    _settings: list[Setting] = PrivateAttr(default_factory=list)

    @field_validator("regions", mode="before")
    @classmethod
    def _one_region(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else region_names(value, declare="cache.declare")

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
        keys = _plugin_keys()
        combos = [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]
        self._settings = [self._setting({**fixed, **combo}, combo, keys) for combo in combos]
        return self

    def _setting(self, values: dict[str, Any], swept: dict[str, Any], keys: dict[str, EntryKey]) -> Setting:
        kind = values.pop("kind", "uniform")
        kinds = policy_kinds()
        if kind not in kinds:
            raise ValueError(
                f"unknown policy kind {kind!r}{did_you_mean(str(kind), kinds)}; known kinds: {listing(kinds)}"
            )
        cache = dict(values.pop("cache", {}))
        bad_cache = set(_ENTRY_OWN_KEYS) & set(cache)
        if bad_cache:
            raise ValueError(
                f"'cache' may not set {listing(bad_cache)}; use the entry's kind, policy fields, regions and forecast"
            )
        regions = values.pop("regions", None)
        regions = [regions] if isinstance(regions, str) else list(regions or ())
        forecast = values.pop("forecast", "none")
        key_regions, key_cache, named = _apply(keys, {key: values.pop(key) for key in list(values) if key in keys})
        policy_fields = set(kinds[kind].model_fields) - {"kind"}
        unknown = set(values) - policy_fields
        if unknown:
            allowed = [*BUILTIN_KEYS, *keys, *sorted(policy_fields)]
            key = sorted(unknown)[0]
            raise ValueError(
                f"key {key!r} is not a field of policy kind {kind!r}{did_you_mean(key, allowed)}; "
                f"keys allowed here: {listing(allowed)}"
            )
        clash = set(key_cache) & set(cache)
        if clash:
            raise ValueError(f"{listing(clash)} set both by an entry key and in 'cache'; keep one")
        mapping = {**cache, **key_cache, "policy": {"kind": kind, **values}, "forecast": forecast}
        selected = [*key_regions, *regions] or None
        if selected is not None:
            mapping["regions"] = selected
        config = validate(CacheConfig, mapping, f"policies entry {self.name or kind!r}")
        return Setting(self._name(kind, {**values, **named}, selected, config.forecast.label, swept), config)

    def _name(
        self, kind: str, values: dict[str, Any], regions: list[str] | None, forecast: str, swept: dict[str, Any]
    ) -> str:
        if self.name is not None:
            suffix = ",".join(f"{key}={_label(key, value)}" for key, value in swept.items())
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


def _plugin_keys() -> dict[str, EntryKey]:
    keys = entry_keys()
    reused = set(keys) & set(BUILTIN_KEYS)
    if reused:
        raise ExperimentError(f"a plugin adds experiment entry keys {listing(reused)}, which are built in")
    return keys


def _apply(keys: dict[str, EntryKey], given: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Validate the plugin keys ``given`` and turn them into regions, other ``CacheConfig`` keys,
    and the keys that name the setting (those that select no regions)."""
    if not given:
        return [], {}, {}
    shape = TypedDict("EntryKeys", {key: keys[key].type for key in given}, total=False)
    regions: list[str] = []
    cache: dict[str, Any] = {}
    named: dict[str, Any] = {}
    for key, value in TypeAdapter(shape).validate_python(given).items():
        sets = dict(keys[key].to_config(value))
        if "regions" in sets:
            selected = sets.pop("regions")
            regions += [selected] if isinstance(selected, str) else list(selected)
        else:
            named[key] = value
        taken = set(sets) & {*_ENTRY_OWN_KEYS, *cache}
        if taken:
            raise ValueError(f"entry key {key!r} sets {listing(taken)}, which the entry or another key sets")
        cache.update(sets)
    return regions, cache, named


def _label(key: str, value: Any) -> str:
    """A swept value as a setting name shows it (a forecast by its label: ``taylor2``)."""
    return ForecastSpec.model_validate(value).label if key == "forecast" else _short(value)


def _short(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
