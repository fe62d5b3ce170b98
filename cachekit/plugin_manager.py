"""The plugin manager: hook specs, default plugins and entry-point discovery.

Third-party plugins are found through the ``cachekit`` entry-point group. Setting
``CACHEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` turns that discovery off (the default plugins,
listed in :data:`DEFAULT_PLUGINS`, are always registered).
"""

from __future__ import annotations

import importlib
import os

import pluggy

from cachekit import hookspecs

ENTRY_POINT_GROUP = "cachekit"
AUTOLOAD_OFF_VARIABLE = "CACHEKIT_DISABLE_PLUGIN_AUTOLOAD"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "cachekit_av",
    "cachekit_diffusers",
    "cachekit_digits",
    "cachekit_dit",
    "cachekit_unet",
)
"""Modules registered as plugins by every plugin manager, by import name (sorted: their order decides nothing).

Precedence is explicit instead of following this order: every first-party hook implementation
is ``trylast``, so any third-party plugin is asked first and can override it; and no two
first-party plugins answer a dispatch hook for the same model (each claims its own model
classes: ``cachekit_unet`` every diffusers UNet, ``cachekit_dit`` the image DiTs,
``cachekit_av`` the video and audio transformers). A plugin adds regions to a model another
maps through ``cachekit_extra_regions`` (``cachekit_av``'s attention kinds on the video and
audio UNets). ``tests/test_plugins_precedence.py`` checks both rules on every model the test
suite builds, and that reversing this tuple changes no answer."""

_manager: pluggy.PluginManager | None = None


def _register_kinds(pm: pluggy.PluginManager) -> None:
    from cachekit.policies.base import register_policy
    from cachekit.probes import register_probe

    pm.hook.cachekit_register_policies(register=register_policy)
    pm.hook.cachekit_register_probes(register=register_probe)


def make_plugin_manager(autoload: bool | None = None) -> pluggy.PluginManager:
    """A new plugin manager with the default plugins and, unless turned off, entry points."""
    pm = pluggy.PluginManager("cachekit")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_OFF_VARIABLE, "") in ("", "0")
    if autoload:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    _register_kinds(pm)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _manager
    if _manager is None:
        _manager = make_plugin_manager()
    return _manager


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` with the process-wide manager and register its policy kinds and probes.

    Returns the name it is registered under; pass it to :func:`unregister_plugin`.
    """
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name or plugin!r} is already registered or blocked")
    _register_kinds(pm)
    return registered


def unregister_plugin(name: str) -> None:
    """Unregister the plugin registered as ``name``."""
    get_plugin_manager().unregister(name=name)
