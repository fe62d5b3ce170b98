"""The public entry points: :func:`enable`, :func:`disable` and :func:`cached`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from cachekit.clock import default_step_completed
from cachekit.config import CacheConfig, load_config
from cachekit.engine import CacheHandle, RegionPlan, handle_of
from cachekit.errors import ConfigError, listing
from cachekit.plugin_manager import get_plugin_manager
from cachekit.policies.base import Policy
from cachekit.selection import find_denoisers, select_regions

ConfigSource = CacheConfig | Mapping[str, Any] | str | Path | Policy | None


def enable(target: Any, config: ConfigSource = None, **overrides: Any) -> CacheHandle:
    """Install caching on a pipeline or a bare model and return its :class:`CacheHandle`.

    Args:
        target: a pipeline (its denoisers are found by the plugins) or an ``nn.Module``.
        config: a :class:`CacheConfig`, a mapping, a policy, a policy kind name, or the path
            of a YAML/TOML/JSON file. ``None`` is ``uniform`` with interval 3.
        overrides: top-level config keys that replace the config's (``policy=...``).

    Raises:
        ConfigError: the config is invalid; the message names each bad path.
        RegionNotFoundError: a region or module path names nothing; the valid ones are listed.
        AlreadyEnabledError: cachekit is already enabled on one of the denoisers.
    """
    settings = load_config(config)
    if overrides:
        settings = load_config({**settings.model_dump(exclude_unset=True), **overrides})
    pm = get_plugin_manager()
    plans = []
    for denoiser in find_denoisers(pm, target, settings):
        regions = select_regions(pm, denoiser, settings)
        _check_region_policies(settings, [region.name for region in regions])
        region_plans = [
            RegionPlan(region, settings.policy_for(denoiser.name, region.name), settings.forecast) for region in regions
        ]
        plans.append((denoiser, region_plans, settings.num_steps))
    step_completed = _step_completed(pm)
    return CacheHandle().install(plans, step_completed)


def _check_region_policies(config: CacheConfig, selected: list[str]) -> None:
    unknown = set(config.region_policies) - set(selected)
    if unknown:
        raise ConfigError(
            f"region_policies names {listing(unknown)}, not a selected region; selected: {listing(selected)}"
        )


def _step_completed(pm: Any) -> Any:
    def step_completed(scheduler: Any) -> bool:
        answer = pm.hook.cachekit_step_completed(scheduler=scheduler)
        return default_step_completed(scheduler) if answer is None else bool(answer)

    return step_completed


def disable(target: Any) -> None:
    """Disable caching given its handle, or the pipeline or model it was enabled on.

    A target with nothing enabled is left alone.
    """
    if isinstance(target, CacheHandle):
        target.disable()
        return
    modules = [target] if isinstance(target, nn.Module) else []
    if not modules:
        found = get_plugin_manager().hook.cachekit_find_denoisers(pipeline=target) or []
        modules = [denoiser.module for denoiser in found]
    for module in modules:
        handle = handle_of(module)
        if handle is not None:
            handle.disable()


@contextmanager
def cached(target: Any, config: ConfigSource = None, **overrides: Any) -> Iterator[CacheHandle]:
    """Caching for the duration of a ``with`` block; disabled on exit, even on error.

    ```python
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 3}}) as handle:
        image = pipe(prompt).images[0]
    print(handle.stats.hit_map())
    ```
    """
    handle = enable(target, config, **overrides)
    try:
        yield handle
    finally:
        handle.disable()
