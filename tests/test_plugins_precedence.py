"""Precedence between plugins is explicit, not an accident of registration order.

* Every first-party hook implementation is ``trylast``: a third-party plugin is asked first.
* No two first-party plugins answer a dispatch hook for the same model: each claims its own
  model classes (checked on every model the test suite builds), so the order of
  ``DEFAULT_PLUGINS`` decides nothing, and reversing it changes no answer.
* A plugin adds regions to a model another plugin maps through ``cachekit_extra_regions``,
  never by answering ``cachekit_regions`` for it; and no plugin imports another's modules.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest
import torch
from cachekit_digits import architectures
from torch import nn

from cachekit import CacheConfig, RegionNotFoundError
from cachekit import plugin_manager as plugin_manager_module
from cachekit.engine.selection import offered_regions
from cachekit.plugin_manager import DEFAULT_PLUGINS, make_plugin_manager
from tests import av_models, dit_models, models, unet_models

PLUGINS = Path(__file__).parents[1] / "plugins"

BUILT: dict[str | None, dict[str, Callable[[], nn.Module]]] = {
    "cachekit_dit": {
        "DiT": dit_models.tiny_dit,
        "PixArt": dit_models.tiny_pixart,
        "SD3": dit_models.tiny_sd3,
        "Flux": dit_models.tiny_flux,
        **{
            name: functools.partial(dit_models.tiny_flux_kin, name)
            for name in ("BriaTransformer2DModel", "LongCatImageTransformer2DModel", "OvisImageTransformer2DModel")
        },
        "Sana": dit_models.tiny_sana,
        "HunyuanDiT": dit_models.tiny_hunyuan,
        "timm-style DiT": dit_models.timm_dit,
        "digits DiT": architectures.build_dit,
    },
    "cachekit_av": av_models.TRANSFORMERS,
    "cachekit_unet": {**unet_models.UNETS, "digits UNet": architectures.build_unet},
    None: {"tiny transformer": models.tiny_transformer, "ControlNet": unet_models.tiny_controlnet},
}
"""Every kind of denoiser the test suite builds, by the one first-party plugin mapping it (``None``: none)."""

MODELS: dict[str, tuple[Callable[[], nn.Module], str | None]] = {
    name: (build, owner) for owner, builds in BUILT.items() for name, build in builds.items()
}
"""The same, by model: its builder and its plugin."""

EXTRA_REGIONS = {"SVD", "UNet3D", "AnimateDiff", "AudioLDM", "AudioLDM2"}
"""Models another first-party plugin (the audio-video one) adds regions to."""

DISPATCH = ("cachekit_regions", "cachekit_region_named", "cachekit_example_inputs")
"""The dispatch hooks answered for a model."""

PROBED_NAMES = ("blocks[0:1]", "blocks[1:2].attn1", "branch0", "spatial_attn", "temporal_attn", "cross_attn")
"""Region names asked of ``cachekit_region_named`` beside the names each model is offered."""


@functools.cache
def model(name: str) -> nn.Module:
    return MODELS[name][0]()


def default_pm(order: tuple[str, ...] = DEFAULT_PLUGINS) -> pluggy.PluginManager:
    """A plugin manager of the first-party plugins only, registered in ``order``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plugin_manager_module, "DEFAULT_PLUGINS", order)
        return make_plugin_manager(autoload=False)


def answers(plugin: str, hook: str, net: nn.Module, names: list[str]) -> bool:
    """True when ``plugin``'s implementation of ``hook`` claims ``net`` (or one of ``names``)."""
    implementation = getattr(importlib.import_module(plugin), hook, None)
    if implementation is None:
        return False
    if hook != "cachekit_region_named":
        return implementation(net) is not None
    for name in names:
        try:
            if implementation(net, name) is not None:
                return True
        except RegionNotFoundError:  # the name is the plugin's, but does not fit this model
            return True
    return False


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("hook", DISPATCH)
def test_one_first_party_plugin_at_most_answers_a_dispatch_hook_for_a_model(hook: str, name: str) -> None:
    net = model(name)
    names = [region.name for region in offered_regions(default_pm(), net, CacheConfig())] + list(PROBED_NAMES)
    claiming = [plugin for plugin in DEFAULT_PLUGINS if answers(plugin, hook, net, names)]
    owner = MODELS[name][1]
    assert len(claiming) <= 1, f"{hook} of {name} is answered by {claiming}"
    if hook == "cachekit_regions":
        assert claiming == ([owner] if owner else []), f"{name} is mapped by {claiming}, not by {owner}"


@pytest.mark.parametrize("name", list(MODELS))
def test_extra_regions_come_from_another_plugin_than_the_mapping_one(name: str) -> None:
    net = model(name)
    adding = [plugin for plugin in DEFAULT_PLUGINS if answers(plugin, "cachekit_extra_regions", net, [])]
    assert adding == (["cachekit_av"] if name in EXTRA_REGIONS else [])
    assert MODELS[name][1] not in adding


def named_outcome(pm: pluggy.PluginManager, net: nn.Module, name: str) -> object:
    """What ``cachekit_region_named`` answers: a region, ``None``, or the error message."""
    try:
        return pm.hook.cachekit_region_named(model=net, name=name)
    except RegionNotFoundError as error:
        return str(error)


@pytest.mark.parametrize("name", list(MODELS))
def test_reversing_the_default_plugins_changes_no_answer(name: str) -> None:
    net = model(name)
    forward, backward = default_pm(), default_pm(DEFAULT_PLUGINS[::-1])
    assert offered_regions(forward, net, CacheConfig()) == offered_regions(backward, net, CacheConfig())
    for region_name in PROBED_NAMES:
        assert named_outcome(forward, net, region_name) == named_outcome(backward, net, region_name), region_name
    inputs = [pm.hook.cachekit_example_inputs(model=net) for pm in (forward, backward)]
    assert (inputs[0] is None) == (inputs[1] is None)
    if inputs[0] is not None:
        assert inputs[0][1].keys() == inputs[1][1].keys()
        for key, value in inputs[0][1].items():
            assert not isinstance(value, torch.Tensor) or torch.equal(value, inputs[1][1][key]), key


def test_every_first_party_implementation_is_trylast() -> None:
    pm = default_pm()
    for plugin in DEFAULT_PLUGINS:
        for caller in pm.get_hookcallers(pm.get_plugin(plugin)) or []:
            for implementation in caller.get_hookimpls():
                if implementation.plugin_name == plugin:
                    assert implementation.trylast, f"{plugin}.{caller.name} is not trylast"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("plugin", DEFAULT_PLUGINS)
def test_no_plugin_imports_another_plugins_modules(plugin: str) -> None:
    for path in (PLUGINS / plugin).rglob("*.py"):
        others = {
            module
            for module in _imported_modules(path)
            if module.split(".")[0] in DEFAULT_PLUGINS
            and module.split(".")[0] != plugin
            and module != "cachekit_diffusers"  # that plugin's public API (its __all__), for pipeline loading
        }
        assert not others, f"{path.relative_to(PLUGINS)} imports {sorted(others)}"


@pytest.mark.parametrize("plugin", DEFAULT_PLUGINS)
def test_plugins_import_public_names_of_the_core_only(plugin: str) -> None:
    """``from cachekit import ...``, ``cachekit.trunk`` and ``cachekit.experiments`` (experiment plugins)."""
    for path in (PLUGINS / plugin).rglob("*.py"):
        core = {module for module in _imported_modules(path) if module.split(".")[0] == "cachekit"}
        public = {"cachekit", "cachekit.trunk", "cachekit.experiments"}
        assert core <= public, f"{path.relative_to(PLUGINS)} imports {sorted(core)}"
