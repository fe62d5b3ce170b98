"""The branches the UNet plugin offers: which modules, in what order, at what FLOP share."""

from __future__ import annotations

import cachekit_unet
import pytest
import torch
from torch import nn

import cachekit
from cachekit.errors import RegionNotFoundError
from cachekit.flops import region_flop_shares
from tests import unet_models
from tests.models import tiny_transformer
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

FAMILIES = unet_models.UNETS


def regions(model: nn.Module) -> list[cachekit.Region] | None:
    """This plugin's branches (the audio-video plugin adds attention regions to some UNets; ``text_kv``,
    which this plugin lists last, is tested in test_core_text_kv)."""
    found = cachekit_unet.cachekit_regions(model)
    return None if found is None else [region for region in found if region.name != "text_kv"]


def example(model: nn.Module) -> tuple[tuple, dict] | None:
    return cachekit_unet.cachekit_example_inputs(model)


def first_call_order(model: nn.Module) -> list[str]:
    """Paths of every submodule in the order an example forward first calls them."""
    order: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda *_, path=path: order.append(path) if path not in order else None)
        for path, module in model.named_modules()
    ]
    args, kwargs = example(model)
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return order


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_branch_lists_its_modules_in_execution_order(family: str) -> None:
    model = FAMILIES[family]()
    order = first_call_order(model)
    found = regions(model)
    assert [region.name for region in found] == [f"branch{k}" for k in range(len(found))]
    for region in found:
        assert set(region.modules) <= set(order), f"{region.name}: modules the forward never calls"
        assert list(region.modules) == sorted(region.modules, key=order.index), region.name
        assert (region.mode, region.inner) == ("output", "replay")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_branches_shrink_with_depth(family: str) -> None:
    """Deeper branches hold strictly fewer FLOPs; branch 0 holds most of the forward."""
    model = FAMILIES[family]()
    found = regions(model)
    shares = region_flop_shares(model, found, *example(model))
    ordered = [shares[region.name] for region in found]
    assert ordered == sorted(ordered, reverse=True) and len(set(ordered)) == len(ordered)
    assert 0.5 < ordered[0] < 1


LAYER_LISTS = {
    "UNet3D": ("resnets", "temp_convs", "attentions", "temp_attentions"),
    "AnimateDiff": ("resnets", "attentions", "motion_modules"),
}


@pytest.mark.parametrize("family", list(LAYER_LISTS))
def test_temporal_and_motion_layers_go_with_their_layer(family: str) -> None:
    """Branch 1 starts at layer 1 of block 0, its temporal or motion modules included, and ends
    with the mirror layer (layer 0) of the last up block, likewise whole."""
    branch1 = regions(FAMILIES[family]())[1].modules
    layer = tuple(f"down_blocks.0.{name}.1" for name in LAYER_LISTS[family])
    mirror = tuple(f"up_blocks.1.{name}.0" for name in LAYER_LISTS[family])
    deeper = ("down_blocks.0.downsamplers.0", "down_blocks.1", "mid_block", "up_blocks.0")
    assert branch1 == layer + deeper + mirror


def test_audioldm2_layers_keep_all_their_attentions() -> None:
    """AudioLDM2 runs a self-attention and two cross-attentions after each resnet."""
    branch4 = regions(unet_models.tiny_audioldm2_unet())[4].modules
    layer = tuple(f"down_blocks.1.attentions.{index}" for index in (3, 4, 5))
    assert branch4[:4] == ("down_blocks.1.resnets.1", *layer)


def test_a_unet_without_mid_block_offers_no_empty_branch() -> None:
    model = unet_models.build_unet("UNet2DModel", ("DownBlock2D", "DownBlock2D"), mid_block_type=None)
    names = [region.name for region in regions(model)]
    assert names == [f"branch{k}" for k in range(5)]  # skip 5 feeds the up path directly


def test_other_models_are_left_to_other_plugins() -> None:
    score_sde = unet_models.build_unet(
        "UNet2DModel",
        ("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        block_out_channels=(32, 64),
        norm_num_groups=32,
        attention_head_dim=8,
    )
    for model in (tiny_transformer(), score_sde):
        assert regions(model) is None
        assert example(model) is None
    with pytest.raises(RegionNotFoundError, match="declare"):
        cachekit.enable(score_sde)
