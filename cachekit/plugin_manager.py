"""The plugin manager: default plugins, entry-point discovery, and the registries they fill.

:func:`load_plugins` is the one door: it builds the process-wide manager once (guarded by a
lock), registers the first-party plugins of :data:`DEFAULT_PLUGINS` and the third-party
ones of the ``cachekit`` entry-point group, and lets every plugin register its policy kinds,
probes and forecasters. The registries themselves never load plugins: :func:`cachekit.enable`,
:func:`cachekit.load_config` and the CLI call :func:`load_plugins` first. Setting
``CACHEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` turns entry-point discovery off (the default plugins
are always registered).
"""

from __future__ import annotations

import importlib
import os
import threading

import pluggy

from cachekit import hookspecs
from cachekit.engine.probes import register_probe
from cachekit.policies.base import register_policy
from cachekit.reuse.forecaster import register_forecaster

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
_lock = threading.Lock()


def _register_kinds(pm: pluggy.PluginManager) -> None:
    pm.hook.cachekit_register_policies(register=register_policy)
    pm.hook.cachekit_register_probes(register=register_probe)
    pm.hook.cachekit_register_forecasters(register=register_forecaster)


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


def load_plugins() -> pluggy.PluginManager:
    """The process-wide plugin manager, built and its kinds registered on the first call only."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                _manager = make_plugin_manager()
    return _manager


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` with the process-wide manager, and its policy kinds, probes and forecasters.

    Returns the name it is registered under; pass it to :func:`unregister_plugin`.
    """
    pm = load_plugins()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name or plugin!r} is already registered or blocked")
    _register_kinds(pm)
    return registered


def unregister_plugin(name: str) -> None:
    """Unregister the plugin registered as ``name``."""
    load_plugins().unregister(name=name)
