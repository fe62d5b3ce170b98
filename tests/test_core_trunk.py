"""cachekit.trunk, the block-trunk machinery plugins for transformers share: a third party's
own transformer mapped with it, names and their errors, families, example-input registries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit import RegionNotFoundError, TupleIO, hookimpl
from cachekit.plugin_manager import register_plugin, unregister_plugin
from cachekit.trunk import (
    SINGLE_STREAM,
    BlockList,
    ExampleInputs,
    Family,
    Trunk,
    family_of,
    noise,
    parse,
    timesteps,
    trunk_region_named,
    trunk_regions,
)
from tests.models import TinyBlock, TinyTransformer

TRUNK_PACKAGE = Path(cachekit.__file__).parent / "trunk"


class TwoListTransformer(nn.Module):
    """A third party's transformer: ``joint`` blocks, then ``single`` ones, Flux-like."""

    def __init__(self, joint: int = 2, single: int = 3, width: int = 16, channels: int = 4):
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.joint = nn.ModuleList(TinyBlock(width) for _ in range(joint))
        self.single = nn.ModuleList(TinyBlock(width) for _ in range(single))
        self.out = nn.Linear(width, channels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        x, c = self.embed(sample), timestep.reshape(-1, 1, 1) / 1000
        for block in (*self.joint, *self.single):
            x = block(x, c)
        return self.out(x)


class Subclass(TwoListTransformer):
    """Matched by its base class's name."""


MINE = Family(classes=("TwoListTransformer",), lists=("joint", "single"), io=SINGLE_STREAM)


class Plugin:
    """A third-party plugin written with cachekit.trunk only, as its docs show."""

    @hookimpl
    def cachekit_regions(self, model: nn.Module) -> list[cachekit.Region] | None:
        trunk = MINE.trunk(model)
        return None if trunk is None else trunk_regions(model, trunk)

    @hookimpl
    def cachekit_region_named(self, model: nn.Module, name: str) -> cachekit.Region | None:
        trunk = MINE.trunk(model)
        return None if trunk is None else trunk_region_named(model, trunk, name)


def model() -> TwoListTransformer:
    torch.manual_seed(0)
    return TwoListTransformer().eval()


def trunk() -> Trunk:
    found = MINE.trunk(model())
    assert found is not None
    return found


def test_a_family_matches_by_class_name_along_the_mro_or_by_its_test() -> None:
    assert MINE.matches(Subclass()) and not MINE.matches(TinyTransformer())
    by_shape = Family((), ("blocks",), SINGLE_STREAM, recognise=lambda m: isinstance(m, TinyTransformer))
    assert family_of(TinyTransformer(), (MINE, by_shape)) is by_shape
    assert family_of(nn.Linear(2, 2), (MINE, by_shape)) is None


def test_a_trunk_numbers_the_lists_as_one_sequence() -> None:
    found = trunk()
    assert found.length == 5 and found.first_block == "joint.0"
    assert found.locate(3) == (found.lists[1], 1)
    assert found.offset(found.lists[1]) == 2
    assert found.describe() == "'joint' (2 blocks), 'single' (3 blocks)"
    with pytest.raises(RegionNotFoundError, match=r"no block list 'triple'; its lists: 'joint' \(2 blocks\)"):
        found.list_named("triple")


def test_empty_lists_are_left_out_and_a_model_without_blocks_has_no_trunk() -> None:
    found = MINE.trunk(TwoListTransformer(joint=0))
    assert found is not None and [block_list.name for block_list in found.lists] == ["single"]
    assert MINE.trunk(TwoListTransformer(joint=0, single=0)) is None
    assert MINE.trunk(TinyTransformer()) is None


@pytest.mark.parametrize(
    ("name", "blocks", "sublayer"),
    [
        ("blocks[1:5]", ("joint.1", "single.0", "single.1", "single.2"), None),
        ("blocks[1:-1]", ("joint.1", "single.0", "single.1"), None),
        ("blocks[3:]", ("single.1", "single.2"), None),
        ("single[0:2]", ("single.0", "single.1"), None),
        ("joint[1]", ("joint.1",), None),
        ("blocks[0:5].mlp", ("joint.0", "joint.1", "single.0", "single.1", "single.2"), "mlp"),
    ],
)
def test_block_names_are_slices_of_the_trunk_or_of_one_list(name: str, blocks: tuple[str, ...], sublayer) -> None:
    found = trunk()
    span = parse(name, found)
    assert span is not None and span.block_paths(found) == blocks and span.sublayer == sublayer


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("blocks[0:9]", "index 9 is out of range; TwoListTransformer has 5 blocks"),
        ("blocks[4:-1]", "selects no blocks"),
        ("single[3]", "give a block index below 3"),
        ("triple[0:1]", "no block list 'triple'"),
    ],
)
def test_a_block_name_that_does_not_fit_says_what_does(name: str, message: str) -> None:
    with pytest.raises(RegionNotFoundError, match=message):
        parse(name, trunk())


def test_other_names_are_not_block_names() -> None:
    assert parse("cross_attn", trunk()) is None
    assert trunk_region_named(model(), trunk(), "branch0") is None


def test_offered_regions_default_first_then_a_range_per_list_then_sub_layers() -> None:
    regions = trunk_regions(model(), trunk())
    assert [region.name for region in regions] == [
        "blocks[1:5]",
        "joint[1:2]",
        "single[0:3]",
        "joint[0:2].mlp",
        "single[0:3].mlp",
    ]
    default = regions[0]
    assert (default.mode, default.inner, default.probe_base) == ("residual", "passthrough", "joint.0")
    assert regions[-1].modules == ("single.0.mlp", "single.1.mlp", "single.2.mlp")
    assert (regions[-1].mode, regions[-1].inner) == ("output", "replay")


def test_a_missing_sub_layer_lists_the_block_children() -> None:
    with pytest.raises(RegionNotFoundError, match=r"has no sub-layer 'attn'; its children: 'mlp', 'norm'"):
        trunk_region_named(model(), trunk(), "blocks[0:2].attn")


def test_a_range_over_lists_of_different_signatures_is_refused() -> None:
    dual = TupleIO(inputs=(("hidden_states", 0),), output_order=(0,))
    mixed = Trunk("Mixed", (trunk().lists[0], BlockList("single", 3, dual)))
    with pytest.raises(RegionNotFoundError, match="select one range per list"):
        trunk_region_named(model(), mixed, "blocks[1:4]")
    assert trunk_region_named(model(), mixed, "single[0:3]").io == dual


def test_a_range_holding_one_end_of_a_long_skip_is_refused() -> None:
    skips = Trunk("Skipped", trunk().lists, skip_pairs=lambda length: [(0, length - 1)])
    with pytest.raises(RegionNotFoundError, match="holds block 0, whose output block 4 reads through a long skip"):
        trunk_region_named(model(), skips, "blocks[0:2]")
    assert trunk_region_named(model(), skips, "blocks[0:5]") is not None
    assert trunk_region_named(model(), skips, "blocks[1:3]") is not None


def test_a_third_party_plugin_built_on_the_trunk_caches_its_model() -> None:
    net = model()
    name = register_plugin(Plugin(), name="trunk-plugin")
    try:
        with cachekit.cached(net, {"policy": {"kind": "uniform", "interval": 2}}) as handle, torch.no_grad():
            for t in (900.0, 600.0, 300.0, 0.0):
                net(torch.randn(1, 8, 4), torch.tensor(t))
        assert list(handle.regions) == ["blocks[1:5]"]
        assert (handle.stats.refreshes, handle.stats.reuses) == (2, 2)
        with cachekit.cached(net, {"regions": ["single[1:]"]}) as handle:
            assert handle.regions["single[1:]"].modules == ("single.1", "single.2")
    finally:
        unregister_plugin(name)


# --- example inputs --------------------------------------------------------------------------


def test_example_inputs_are_found_along_the_mro_and_seeded() -> None:
    examples = ExampleInputs()

    @examples.builds("TwoListTransformer")
    def _two_lists(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
        return {"sample": noise(generator, batch_size, 8, 4), "timestep": timesteps(batch_size)}

    kwargs = examples.kwargs(Subclass(), batch_size=2, seed=1)
    assert kwargs is not None and kwargs["sample"].shape == (2, 8, 4)
    assert torch.equal(kwargs["timestep"], torch.full((2,), 500.0))
    assert torch.equal(kwargs["sample"], examples.kwargs(model(), batch_size=2, seed=1)["sample"])
    assert not torch.equal(kwargs["sample"], examples.kwargs(model(), batch_size=2, seed=2)["sample"])
    assert examples.class_names == ("TwoListTransformer",)
    args, call = examples.inputs(model())
    assert args == () and call["sample"].shape == (1, 8, 4)
    assert model()(*args, **call).shape == (1, 8, 4)
    assert examples.kwargs(nn.Linear(2, 2)) is None and examples.inputs(nn.Linear(2, 2)) is None


def test_the_fallback_builds_for_unregistered_classes() -> None:
    examples = ExampleInputs(fallback=lambda model, batch_size, generator: {"batch": batch_size})
    assert examples.kwargs(nn.Linear(2, 2), batch_size=3) == {"batch": 3}


def test_registering_a_class_again_warns_and_no_class_is_an_error() -> None:
    examples = ExampleInputs()
    examples.builds("A")(lambda model, batch_size, generator: {})
    with pytest.warns(UserWarning, match="example inputs of 'A' re-registered"):
        examples.builds("A")(lambda model, batch_size, generator: {"new": True})
    with pytest.raises(TypeError, match="at least one class name"):
        examples.builds()


# --- what the package may import -------------------------------------------------------------


def test_the_trunk_package_imports_torch_and_cachekit_only() -> None:
    allowed = {"__future__", "collections", "dataclasses", "re", "typing", "warnings", "torch", "cachekit"}
    for path in TRUNK_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            assert {name.split(".")[0] for name in names} <= allowed, f"{path.name} imports {names}"


def test_importing_the_trunk_loads_no_model_library_and_no_plugin() -> None:
    code = (
        "import sys, cachekit.trunk; "
        "loaded = {name.split('.')[0] for name in sys.modules}; "
        "assert not loaded & {'diffusers', 'timm', 'cachekit_dit', 'cachekit_av', 'cachekit_unet'}, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
