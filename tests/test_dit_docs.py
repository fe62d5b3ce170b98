"""The DiT page's examples run and print the hit maps the page shows."""

from __future__ import annotations

import runpy

import pytest
import torch

import cachekit
from cachekit.plugin_manager import load_plugins, register_plugin, unregister_plugin
from tests import dit_models
from tests.docs_support import DOCS_SRC, load_module
from tests.models import TinyTransformer

EXAMPLES = DOCS_SRC / "models"


def test_flux_quickstart_prints_the_hit_map_on_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "dit_quickstart.py"
    generate = runpy.run_path(str(example))["generate"]
    pipe, call = dit_models.flux_pipeline()
    dit_models.smooth_time(pipe.transformer)
    latents = generate(pipe, **call, num_inference_steps=28)
    assert latents.shape == (1, 16, 8)
    assert capsys.readouterr().out == example.with_suffix(".txt").read_text(encoding="utf-8")


def test_timm_style_example_prints_the_hit_map_on_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "dit_timm.py"
    sample = runpy.run_path(str(example))["sample"]
    model = dit_models.timm_dit()
    generator = torch.Generator().manual_seed(0)
    x = sample(model, torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([1, 7]))
    assert x.shape == (2, 4, 8, 8)
    assert capsys.readouterr().out == example.with_suffix(".txt").read_text(encoding="utf-8")


class MyDiT(TinyTransformer):
    """Stands for mylib's transformer: the example plugin knows it by this class name."""


def test_own_dit_plugin_example_maps_the_model_with_the_trunk() -> None:
    plugin = load_module(EXAMPLES / "dit_plugin.py", "cachekit_docs_dit_plugin")
    assert plugin.cachekit_regions(torch.nn.Linear(2, 2)) is None
    name = register_plugin(plugin, name="docs-dit-plugin")
    try:
        torch.manual_seed(0)
        model = MyDiT().eval()
        regions = load_plugins().hook.cachekit_regions(model=model)
        assert [region.name for region in regions] == ["blocks[1:6]", "blocks[0:6].mlp"]
        args, kwargs = load_plugins().hook.cachekit_example_inputs(model=model)
        config = {"policy": {"kind": "uniform", "interval": 2}, "regions": ["blocks[2:-1]"]}
        with cachekit.cached(model, config) as handle, torch.no_grad():
            for t in (900.0, 600.0, 300.0, 0.0):
                model(*args, **{**kwargs, "timestep": torch.tensor([t])})
        assert handle.regions["blocks[2:-1]"].modules == ("blocks.2", "blocks.3", "blocks.4")
        assert handle.stats.reuses == 2
    finally:
        unregister_plugin(name)
