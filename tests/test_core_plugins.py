"""The plugin system: entry-point discovery, its off switch, overriding first-party plugins."""

from __future__ import annotations

import textwrap

import pytest
import torch

import cachekit
from cachekit import Region
from cachekit.engine.probes import PROBES
from cachekit.plugin_manager import AUTOLOAD_OFF_VARIABLE, make_plugin_manager, register_plugin, unregister_plugin
from cachekit.policies.base import policy_kinds
from tests.models import tiny_transformer


@pytest.fixture(autouse=True)
def restore_registries(scoped_registries):
    """Policy kinds and probes registered by a test's plugins vanish after the test."""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A third-party distribution with a ``cachekit`` entry point, importable from tmp_path."""
    (tmp_path / "acme_cachekit.py").write_text(
        textwrap.dedent(
            '''
            """Acme's plugin: maps TinyTransformer and adds a policy kind."""
            from typing import Literal
            import cachekit

            class EveryOther(cachekit.Policy):
                kind: Literal["acme-every-other"] = "acme-every-other"

                def should_refresh(self, step, state):
                    return step.index % 2 == 0

            @cachekit.hookimpl
            def cachekit_regions(model):
                if type(model).__name__ != "TinyTransformer":
                    return None
                return [cachekit.Region("acme-middle", ("blocks.2", "blocks.3"), mode="residual")]

            @cachekit.hookimpl
            def cachekit_register_policies(register):
                register(EveryOther)
            '''
        )
    )
    info = tmp_path / "acme_cachekit-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-cachekit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cachekit]\nacme = acme_cachekit\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "acme"


def test_entry_point_plugin_is_discovered_with_its_regions_and_policies(installed_plugin):
    pm = make_plugin_manager()
    assert pm.get_plugin(installed_plugin) is not None
    (regions,) = [pm.hook.cachekit_regions(model=tiny_transformer())]
    assert [region.name for region in regions] == ["acme-middle"]
    assert "acme-every-other" in policy_kinds()


def test_autoload_off_switch(installed_plugin, monkeypatch):
    monkeypatch.setenv(AUTOLOAD_OFF_VARIABLE, "1")
    pm = make_plugin_manager()
    assert pm.get_plugin(installed_plugin) is None
    assert pm.get_plugin("cachekit_diffusers") is not None  # defaults stay


class Override:
    """A third-party plugin claiming a model a first-party plugin also maps."""

    @cachekit.hookimpl
    def cachekit_regions(self, model):
        if type(model).__name__ == "TinyTransformer":
            return [Region("mine", ("blocks.4",), mode="output")]
        return None


def test_registered_plugin_is_used_and_unregistered_plugin_is_gone():
    model = tiny_transformer()
    name = register_plugin(Override(), name="override")
    try:
        with cachekit.cached(model) as handle:
            assert list(handle.regions) == ["mine"]
    finally:
        unregister_plugin(name)
    assert name not in dict(make_plugin_manager().list_name_plugin())
    with cachekit.cached(model, {"declare": [{"name": "d", "entry": "blocks.1"}]}) as handle:
        assert list(handle.regions) == ["d"]


def test_third_party_overrides_first_party_dispatch():
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler())

    class Finder:
        @cachekit.hookimpl
        def cachekit_find_denoisers(self, pipeline):
            return [cachekit.Denoiser("custom", pipeline.unet)]

    name = register_plugin(Finder(), name="finder")
    try:
        config = {"declare": [{"name": "mid", "entry": "mid_block", "mode": "output"}]}
        with cachekit.cached(pipe, config) as handle:
            assert [rt.denoiser.name for rt in handle.runtimes] == ["custom"]
            assert handle.runtimes[0].denoiser.scheduler is None
    finally:
        unregister_plugin(name)


def test_plugin_probe_is_usable_by_similarity():
    class NormProbe:
        def watched_modules(self, region):
            return ()

        def measure(self, entry_inputs, watched):
            return entry_inputs[0].norm(dim=-1)

    class ProbePlugin:
        @cachekit.hookimpl
        def cachekit_register_probes(self, register):
            register("token-norm", NormProbe())

    name = register_plugin(ProbePlugin(), name="probe-plugin")
    try:
        assert "token-norm" in PROBES.names()
        model = tiny_transformer()
        config = {
            "policy": {"kind": "similarity", "probe": "token-norm", "threshold": 10.0},
            "declare": [{"name": "m", "entry": "blocks.1", "exit": "blocks.4"}],
        }
        with cachekit.cached(model, config) as handle, torch.no_grad():
            for t in (900.0, 800.0, 700.0):
                model(torch.randn(1, 8, 4), torch.tensor(t))
        assert handle.stats["m"].reuses == 2
    finally:
        unregister_plugin(name)
