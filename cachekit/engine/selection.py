"""Choosing what to cache: denoisers of a pipeline and disjoint regions of each."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import pluggy
from torch import nn

from cachekit.config import CacheConfig, DeclaredRegion
from cachekit.denoiser import Denoiser
from cachekit.errors import ConfigError, DenoiserNotFoundError, RegionNotFoundError, did_you_mean, listing
from cachekit.modules import get_submodule, sibling_span, uncompiled
from cachekit.region import Region


def find_denoisers(pm: pluggy.PluginManager, target: Any, config: CacheConfig) -> list[Denoiser]:
    """The denoisers of ``target`` that ``config`` selects, found by the plugins."""
    found = pm.hook.cachekit_find_denoisers(pipeline=target)
    if not found and isinstance(target, nn.Module):
        found = [Denoiser("model", target)]
    if not found:
        plugins = [name for name, _ in pm.list_name_plugin()]
        raise DenoiserNotFoundError(
            f"no plugin found a denoiser in {type(target).__name__}; installed plugins: {listing(plugins)}. "
            "Pass the denoiser module itself (e.g. pipe.unet), or install a plugin for this pipeline"
        )
    by_name = {denoiser.name: denoiser for denoiser in found}
    owner = f"a denoiser of {type(target).__name__}"
    check_overrides("denoiser_policies", config.denoiser_policies, by_name, owner, "its denoisers")
    if config.denoisers is None:
        return found
    for name in config.denoisers:
        if name not in by_name:
            raise DenoiserNotFoundError(
                f"denoiser {name!r} is not in {type(target).__name__}{did_you_mean(name, by_name)}; "
                f"its denoisers: {listing(by_name)}"
            )
    return [by_name[name] for name in config.denoisers]


def declared_region(model: nn.Module, spec: DeclaredRegion) -> Region:
    """A :class:`Region` from a config declaration, its module paths checked against ``model``."""
    modules = sibling_span(model, spec.entry, spec.exit or spec.entry)
    return Region(name=spec.name, modules=modules, mode=spec.mode, inner=spec.inner, description="declared in config")


def offered_regions(pm: pluggy.PluginManager, model: nn.Module, config: CacheConfig) -> list[Region]:
    """Every region a plugin offers for ``model`` (the mapping plugin's, then every plugin's
    extra regions) followed by those ``config`` declares."""
    offered = list(pm.hook.cachekit_regions(model=model) or [])
    offered += [region for extra in pm.hook.cachekit_extra_regions(model=model) for region in extra]
    declared = [declared_region(model, spec) for spec in config.declare]
    names = [region.name for region in offered + declared]
    clash = {name for name in names if names.count(name) > 1}
    if clash:
        raise ConfigError(
            f"region names {listing(clash)} are offered twice (by plugins or declared in the config); "
            "choose other names"
        )
    return offered + declared


def select_regions(pm: pluggy.PluginManager, denoiser: Denoiser, config: CacheConfig) -> list[Region]:
    """The regions of ``denoiser`` to cache: named ones, else declared ones, else the plugin's first.

    A denoiser compiled by ``torch.compile`` is looked at through the module it wraps.
    """
    model = uncompiled(denoiser.module)
    offered = offered_regions(pm, model, config)
    by_name = {region.name: region for region in offered}
    if config.regions is not None:
        for name in config.regions:
            if name not in by_name and (named := pm.hook.cachekit_region_named(model=model, name=name)) is not None:
                by_name[name] = named
            if name not in by_name:
                raise RegionNotFoundError(
                    f"region {name!r} is not a region of {type(model).__name__}{did_you_mean(name, by_name)}; "
                    f"available: {listing(by_name) or 'none (declare regions by module path)'}"
                )
        chosen = [by_name[name] for name in config.regions]
    elif config.declare:
        chosen = [by_name[spec.name] for spec in config.declare]
    else:
        chosen = offered[:1]
    if not chosen:
        raise RegionNotFoundError(
            f"no plugin maps regions onto {type(model).__name__}; declare them in the config by module "
            "paths, e.g. declare: [{name: middle, entry: blocks.2, exit: blocks.9}]"
        )
    for region in chosen:
        for path in region.modules:
            _check_called(model, region, path)
    _check_disjoint(chosen)
    return chosen


def _check_called(model: nn.Module, region: Region, path: str) -> None:
    """A region's modules must exist and be modules a forward calls (not containers, not the model)."""
    module = get_submodule(model, path)
    if module is model:
        raise ConfigError(f"region {region.name!r} names the model itself; name modules inside it")
    if isinstance(module, nn.ModuleList | nn.ModuleDict):
        items = [f"{path}.{name}" for name in module._modules]
        span = f"{items[0]} to {items[-1]}" if items else "its items"
        raise ConfigError(
            f"region {region.name!r}: {path!r} is a {type(module).__name__}, which a forward never calls; "
            f"name the modules it holds, e.g. entry {items[0] if items else path + '.0'!r} and exit "
            f"{items[-1] if items else path + '.0'!r} ({span})"
        )


def check_overrides(field: str, overrides: Iterable[str], known: Iterable[str], what: str, label: str) -> None:
    """Every name the config's ``field`` overrides must be one of ``known`` (``what`` each must be,
    ``label`` the list of choices in the message)."""
    known = list(known)
    unknown = set(overrides) - set(known)
    if unknown:
        raise ConfigError(f"{field} names {listing(unknown)}, not {what}; {label}: {listing(known)}")


def _check_disjoint(regions: list[Region]) -> None:
    """No module may belong to two regions, nor sit inside a module of another region, except a
    keyed region's: it is exact, so it may sit inside another region's modules (never around them)."""
    plain = sorted((path, region.name) for region in regions if region.mode != "keyed" for path in region.modules)
    for (path, owner), (other_path, other_owner) in pairwise(plain):
        if other_path == path or other_path.startswith(path + "."):
            _overlap(owner, path, other_owner, other_path)
    every = [(path, region.name) for region in regions for path in region.modules]
    for region in regions:
        if region.mode != "keyed":
            continue
        for path in region.modules:
            for other_path, other_owner in every:
                if (other_path == path and other_owner != region.name) or other_path.startswith(path + "."):
                    _overlap(region.name, path, other_owner, other_path)


def _overlap(owner: str, path: str, other_owner: str, other_path: str) -> None:
    raise ConfigError(
        f"regions {owner!r} and {other_owner!r} overlap: {other_path!r} "
        f"{'is' if other_path == path else 'is inside'} {path!r}; selected regions must not overlap"
    )
