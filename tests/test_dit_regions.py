"""Region names of the DiT plugin: block ranges, sub-layers, defaults and the errors at enable time."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from cachekit_dit.inputs import EXAMPLES
from torch import nn

import cachekit
from cachekit.errors import ConfigError, RegionNotFoundError
from cachekit.plugin_manager import load_plugins
from tests import dit_models
from tests.models import tiny_transformer


def regions_of(model: nn.Module) -> list[str]:
    return [region.name for region in load_plugins().hook.cachekit_regions(model=model) or []]


def region_named(model: nn.Module, name: str) -> cachekit.Region:
    with cachekit.cached(model, {"regions": [name]}) as handle:
        return handle.regions[name]


@pytest.fixture(scope="module")
def flux() -> nn.Module:
    """Two dual-stream blocks, then two single-stream ones."""
    return dit_models.tiny_flux()


def test_offered_names_are_stable_and_default_first() -> None:
    assert regions_of(dit_models.tiny_pixart()) == [
        "blocks[1:4]",
        "transformer_blocks[0:4].attn1",
        "transformer_blocks[0:4].attn2",
        "transformer_blocks[0:4].ff",
        "text_kv",
    ]
    assert regions_of(dit_models.tiny_flux()) == [
        "blocks[1:4]",
        "transformer_blocks[1:2]",
        "single_transformer_blocks[0:2]",
        "transformer_blocks[0:2].attn",
        "transformer_blocks[0:2].ff",
        "transformer_blocks[0:2].ff_context",
        "single_transformer_blocks[0:2].attn",
        "single_transformer_blocks[0:2].proj_mlp",
    ]
    assert regions_of(dit_models.timm_dit()) == ["blocks[1:4]", "blocks[0:4].attn", "blocks[0:4].mlp"]


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        ("blocks[1:4]", ("transformer_blocks.1", "single_transformer_blocks.0", "single_transformer_blocks.1")),
        ("blocks[2:-1]", ("single_transformer_blocks.0",)),
        (
            "blocks[:]",
            (
                "transformer_blocks.0",
                "transformer_blocks.1",
                "single_transformer_blocks.0",
                "single_transformer_blocks.1",
            ),
        ),
        ("blocks[3]", ("single_transformer_blocks.1",)),
        ("single_transformer_blocks[-1:]", ("single_transformer_blocks.1",)),
        ("transformer_blocks[1].ff", ("transformer_blocks.1.ff",)),
        ("blocks[1:3].attn", ("transformer_blocks.1.attn", "single_transformer_blocks.0.attn")),
    ],
)
def test_names_select_blocks_like_python_slices(flux: nn.Module, name: str, modules: tuple[str, ...]) -> None:
    region = region_named(flux, name)
    assert region.modules == modules
    assert region.mode == ("output" if "." in name.split("]")[-1] else "residual")


def test_block_ranges_carry_both_streams_and_probe_from_the_first_block(flux: nn.Module) -> None:
    region = region_named(flux, "blocks[2:4]")
    assert region.probe_base == "transformer_blocks.0"
    assert len(region.io.read_inputs((), {"hidden_states": 1, "encoder_hidden_states": 2})) == 2
    assert region_named(flux, "blocks[0:2]").probe_base is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("blocks[8:]", r"index 8 is out of range; FluxTransformer2DModel has 4 blocks"),
        ("blocks[3:3]", r"selects no blocks.*Fn \+ Bn < 4"),
        ("blocks[0:9]", r"index 9 is out of range"),
        ("blocks[4]", r"give a block index below 4"),
        ("double_blocks[1:2]", r"no block list 'double_blocks'; its lists: 'transformer_blocks' \(2 blocks\)"),
        ("transformer_blocks[0:2].attn2", r"no sub-layer 'attn2'; its children: .*'attn'"),
    ],
)
def test_names_that_do_not_fit_fail_at_enable_time(flux: nn.Module, name: str, message: str) -> None:
    calls = []
    hook = flux.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(RegionNotFoundError, match=message):
            cachekit.enable(flux, {"regions": [name]})
    finally:
        hook.remove()
    assert not calls, "the error came before any forward call"
    assert not any("forward" in vars(module) for module in flux.modules())


def test_an_unknown_name_lists_the_offered_regions(flux: nn.Module) -> None:
    with pytest.raises(RegionNotFoundError, match=r"available: .*'blocks\[1:4\]'"):
        cachekit.enable(flux, {"regions": ["middle"]})


def test_fewer_blocks_than_the_default_first_blocks_cache_the_only_block() -> None:
    model = dit_models.tiny_flux(num_layers=1, num_single_layers=0)
    assert regions_of(model)[:1] == ["blocks[0:1]"]
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None
    with cachekit.cached(model, {"policy": {"kind": "uniform", "interval": 2}}) as handle:
        dit_models.denoise(model, kwargs)
    assert handle.stats.reuses == 3
    with pytest.raises(ConfigError, match="entry_residual.*probe_base"):
        cachekit.enable(model, {"policy": {"kind": "similarity", "probe": "entry_residual"}})
    assert "forward" not in vars(model)


def test_several_disjoint_ranges_each_with_its_own_policy(flux: nn.Module) -> None:
    config: dict[str, Any] = {
        "regions": ["transformer_blocks[1:2]", "single_transformer_blocks[0:2]"],
        "region_policies": {"single_transformer_blocks[0:2]": {"kind": "uniform", "interval": 3}},
        "policy": {"kind": "uniform", "interval": 2},
    }
    kwargs = EXAMPLES.kwargs(flux)
    assert kwargs is not None
    with cachekit.cached(flux, config) as handle:
        dit_models.denoise(flux, kwargs)
    assert handle.stats.refresh_steps("transformer_blocks[1:2]") == [0, 2, 4]
    assert handle.stats.refresh_steps("single_transformer_blocks[0:2]") == [0, 3]


def test_overlapping_ranges_are_refused(flux: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"'blocks\[1:3\]' and 'single_transformer_blocks\[0:2\]'.*overlap"):
        cachekit.enable(flux, {"regions": ["blocks[1:3]", "single_transformer_blocks[0:2]"]})


def test_attention_and_mlp_sublayers_each_with_its_own_policy() -> None:
    model = dit_models.tiny_pixart()
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None
    attention, mlp = "transformer_blocks[0:4].attn1", "transformer_blocks[0:4].ff"
    config = {"regions": [attention, mlp], "region_policies": {mlp: {"kind": "uniform", "interval": 3}}}
    calls = {"attn1": 0, "ff": 0}
    blocks = model.transformer_blocks
    hooks = [
        getattr(block, name).to_q.register_forward_pre_hook(lambda *_: calls.__setitem__("attn1", calls["attn1"] + 1))
        if name == "attn1"
        else getattr(block, name).net[0].register_forward_pre_hook(lambda *_: calls.__setitem__("ff", calls["ff"] + 1))
        for block in blocks
        for name in ("attn1", "ff")
    ]
    try:
        with cachekit.cached(model, {**config, "policy": {"kind": "uniform", "interval": 2}}) as handle:
            dit_models.denoise(model, kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    assert handle.stats.refresh_steps(attention) == [0, 2, 4]
    assert handle.stats.refresh_steps(mlp) == [0, 3]
    assert calls == {"attn1": 3 * len(blocks), "ff": 2 * len(blocks)}


def test_hunyuan_ranges_must_keep_long_skips_paired() -> None:
    model = dit_models.tiny_hunyuan()  # 6 blocks: block 1 feeds block 4, block 0 feeds block 5
    with pytest.raises(RegionNotFoundError, match="holds block 1, whose output block 4 reads through a long skip"):
        cachekit.enable(model, {"regions": ["blocks[1:4]"]})
    for fine in ("blocks[1:6]", "blocks[2:4]", "blocks[0:6]"):
        assert region_named(model, fine).name == fine


def test_a_timm_style_dit_needs_no_config_and_a_plain_block_stack_is_left_alone() -> None:
    model = dit_models.timm_dit()
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None and set(kwargs) == {"x", "t", "y"}
    with cachekit.cached(model, "similarity") as handle:
        dit_models.denoise(model, kwargs, sample_key="x", timestep_key="t")
    assert list(handle.regions) == ["blocks[1:4]"]
    assert regions_of(tiny_transformer()) == []  # blocks(x, c) but no x_embedder / t_embedder


def test_example_inputs_hook_answers_only_for_mapped_models() -> None:
    hook = load_plugins().hook.cachekit_example_inputs
    args, kwargs = hook(model=dit_models.tiny_sd3())
    assert args == () and set(kwargs) == {"hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"}
    assert hook(model=torch.nn.Linear(2, 2)) is None


def test_the_plugin_never_imports_diffusers() -> None:
    code = "import sys, cachekit_dit, cachekit; cachekit.enable; assert 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
