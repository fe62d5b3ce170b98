"""The ``cachekit_extra_regions`` hook: regions any plugin adds to a model another plugin maps.

Every plugin's answer is collected and listed after the mapping plugin's regions, so the
default stays the mapping plugin's; the regions are selectable by name like any other. The
audio-video plugin adds its attention kinds to the video and audio UNets this way, whose
branches the UNet plugin alone maps.
"""

from __future__ import annotations

from collections.abc import Iterator

import cachekit_unet
import pytest
import torch
from torch import nn

import cachekit
from cachekit import CacheConfig, ConfigError, Region, hookimpl
from cachekit.engine.selection import offered_regions
from cachekit.plugin_manager import load_plugins, register_plugin, unregister_plugin
from tests import dit_models, unet_models
from tests.models import tiny_transformer
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)


class AddsRegion:
    """A third-party plugin adding one region ``name`` over ``modules`` of any model that has them."""

    def __init__(self, name: str, modules: tuple[str, ...]) -> None:
        self.name, self.modules = name, modules

    @hookimpl
    def cachekit_extra_regions(self, model: nn.Module) -> list[Region] | None:
        if not all(path in dict(model.named_modules()) for path in self.modules):
            return None
        return [Region(self.name, self.modules, mode="output", inner="replay")]


@pytest.fixture
def registered(request: pytest.FixtureRequest) -> Iterator[None]:
    """The plugins of ``request.param`` registered for one test."""
    names = [register_plugin(plugin, name=f"extra-{index}") for index, plugin in enumerate(request.param)]
    try:
        yield
    finally:
        for name in names:
            unregister_plugin(name)


def offered(model: nn.Module) -> list[str]:
    return [region.name for region in offered_regions(load_plugins(), model, CacheConfig())]


@pytest.mark.parametrize("registered", [[AddsRegion("last-mlp", ("blocks.3.mlp",))]], indirect=True)
def test_extra_regions_follow_the_mapping_plugins_and_the_default_stays_first(registered: None) -> None:
    model = dit_models.timm_dit()
    assert offered(model) == ["blocks[1:4]", "blocks[0:4].attn", "blocks[0:4].mlp", "last-mlp"]
    args, kwargs = load_plugins().hook.cachekit_example_inputs(model=model)
    with cachekit.cached(model) as handle:
        assert list(handle.regions) == ["blocks[1:4]"]
    config = {"regions": ["last-mlp"], "policy": {"kind": "uniform", "interval": 2}}
    with cachekit.cached(model, config) as handle, torch.no_grad():
        for t in (900, 600, 300, 0):
            model(*args, **{**kwargs, "t": torch.tensor([t])})
    assert handle.stats["last-mlp"].reuses == 2


@pytest.mark.parametrize(
    "registered", [[AddsRegion("first", ("blocks.0",)), AddsRegion("second", ("blocks.5",))]], indirect=True
)
def test_every_plugins_extra_regions_are_collected(registered: None) -> None:
    """No plugin maps the tiny transformer: the extra regions alone are offered, the first the default."""
    model = tiny_transformer()
    assert sorted(offered(model)) == ["first", "second"]
    with cachekit.cached(model) as handle:
        assert list(handle.regions) == offered(model)[:1]


@pytest.mark.parametrize("registered", [[AddsRegion("blocks[1:4]", ("blocks.1.mlp",))]], indirect=True)
def test_an_extra_region_may_not_take_a_name_the_model_has(registered: None) -> None:
    with pytest.raises(ConfigError, match=r"region names 'blocks\[1:4\]' are offered twice"):
        cachekit.enable(dit_models.timm_dit())


@pytest.mark.parametrize(
    ("build", "kinds"),
    [
        (unet_models.tiny_svd_unet, ["spatial_attn", "temporal_attn", "cross_attn"]),
        (unet_models.tiny_unet3d, ["spatial_attn", "temporal_attn", "cross_attn"]),
        (unet_models.tiny_motion_unet, ["spatial_attn", "temporal_attn", "cross_attn"]),
        (unet_models.tiny_audioldm_unet, ["spatial_attn"]),
        (unet_models.tiny_audioldm2_unet, ["spatial_attn", "cross_attn"]),
        (unet_models.tiny_sd_unet, []),
    ],
)
def test_the_unet_plugin_maps_every_unet_and_the_av_plugin_adds_the_attention_kinds(build, kinds) -> None:
    unet = build()
    branches = [region.name for region in cachekit_unet.cachekit_regions(unet)]
    assert load_plugins().hook.cachekit_regions(model=unet) == cachekit_unet.cachekit_regions(unet)
    assert offered(unet) == branches + kinds
    assert branches[0] == "branch0"
