"""The public entry points: :func:`enable`, :func:`disable` and :func:`cached`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from cachekit.clock import default_step_completed
from cachekit.config import CacheConfig, load_config
from cachekit.engine.handle import CacheHandle, RegionPlan, handle_of
from cachekit.engine.offloading import check_offloading
from cachekit.engine.selection import check_overrides, find_denoisers, select_regions
from cachekit.engine.static import check_static
from cachekit.errors import ConfigError, listing
from cachekit.modules import uncompiled
from cachekit.plugin_manager import load_plugins
from cachekit.policies.base import Policy
from cachekit.region import Region

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
        UnsupportedCombinationError: another tool set the model up in a way cachekit cannot
            serve (diffusers group offloading enabled first, with groups a region splits).
    """
    settings = load_config(config)
    if overrides:
        settings = load_config({**settings.model_dump(exclude_unset=True), **overrides})
    pm = load_plugins()
    plans = []
    for denoiser in find_denoisers(pm, target, settings):
        regions = select_regions(pm, denoiser, settings)
        names = [region.name for region in regions]
        check_overrides("region_policies", settings.region_policies, names, "a selected region", "selected")
        _check_keyed_policies(regions, settings)
        check_offloading(uncompiled(denoiser.module), regions)
        region_plans = [
            RegionPlan(region, settings.policy_for(denoiser.name, region.name), settings.forecast) for region in regions
        ]
        plans.append((denoiser, region_plans, settings.num_steps))
    if settings.static:
        check_static((plan.region, plan.policy) for _, region_plans, _ in plans for plan in region_plans)
    return CacheHandle().install(plans, _step_completed(pm), settings.process_group, settings.static)


def _check_keyed_policies(regions: list[Region], settings: CacheConfig) -> None:
    """A keyed region follows no policy: one given for it in ``region_policies`` is an error."""
    keyed = [region.name for region in regions if region.mode == "keyed" and region.name in settings.region_policies]
    if keyed:
        raise ConfigError(
            f"region_policies names {listing(keyed)}, keyed on exact inputs: such a region reuses a result "
            "exactly while its input is unchanged and recomputes when it changes, so no policy applies; "
            "remove it from region_policies"
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
        found = load_plugins().hook.cachekit_find_denoisers(pipeline=target) or []
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
