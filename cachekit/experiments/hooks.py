"""The experiment hooks on the process-wide plugin manager, and what the runner asks of them.

The experiment hook specs (``cachekit.experiments.hookspecs``, described on the Plugin
hooks page) are added to the manager the first time experiments are used; the core never
loads them.
"""

from __future__ import annotations

from typing import Any

import pluggy

from cachekit.errors import ConfigError, did_you_mean, listing
from cachekit.experiments import hookspecs
from cachekit.experiments.entry_key import EntryKey
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.model_spec import ModelSpec
from cachekit.plugin_manager import load_plugins


def experiment_plugins() -> pluggy.PluginManager:
    """The process-wide plugin manager, with the experiment hook specs added (once)."""
    pm = load_plugins()
    caller = getattr(pm.hook, "cachekit_load_experiment_model", None)
    if caller is None or not caller.has_spec():
        pm.add_hookspecs(hookspecs)
    return pm


def entry_keys() -> dict[str, EntryKey]:
    """The plugins' extra entry keys, by name; a key two plugins add is an error."""
    keys: dict[str, EntryKey] = {}
    for answer in experiment_plugins().hook.cachekit_experiment_entry_keys():
        taken = set(keys) & set(answer)
        if taken:
            raise ExperimentError(f"experiment entry keys {listing(taken)} are added by two plugins; keep one")
        keys.update(answer)
    return keys


def named_models() -> list[ModelSpec]:
    """The models the plugins load by name (shipped models and builders)."""
    return [spec for answer in experiment_plugins().hook.cachekit_experiment_models() for spec in answer]


def load_model(spec: ModelSpec) -> Any:
    """The pipeline a plugin loads for ``spec``, or a clear error naming what can be loaded."""
    pm = experiment_plugins()
    pipeline = pm.hook.cachekit_load_experiment_model(spec=spec)
    if pipeline is not None:
        return pipeline
    if spec.builder is not None:
        builders = [model.builder for model in named_models() if model.builder is not None]
        raise ConfigError(
            f"unknown model builder {spec.builder!r}{did_you_mean(spec.builder, builders)}; known: {listing(builders)}"
        )
    plugins = [name for name, _ in pm.list_name_plugin()]
    raise ExperimentError(
        f"no plugin loads model {spec.label!r}; installed plugins: {listing(plugins)}. Install the "
        "'diffusers' extra for local folders and hub ids, or a plugin that knows this model"
    )
