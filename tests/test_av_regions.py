"""The regions the audio/video plugin offers: names, attention kinds, order, and errors."""

from __future__ import annotations

import pytest
from cachekit_av.inputs import EXAMPLES
from torch import nn

import cachekit
from cachekit.errors import ConfigError, RegionNotFoundError
from cachekit.flops import region_flop_shares
from cachekit.plugin_manager import load_plugins
from tests import av_models, unet_models
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

KINDS = ("spatial_attn", "temporal_attn", "cross_attn")


def offered(model: nn.Module) -> list[str]:
    return [region.name for region in load_plugins().hook.cachekit_regions(model=model)]


def kind_modules(model: nn.Module) -> dict[str, tuple[str, ...]]:
    named = load_plugins().hook.cachekit_region_named
    return {kind: region.modules for kind in KINDS if (region := named(model=model, name=kind)) is not None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cogvideox", ["blocks[1:2]", "transformer_blocks[0:2].attn1", "transformer_blocks[0:2].ff", "spatial_attn"]),
        (
            "wan",
            ["blocks[1:2]", "blocks[0:2].attn1", "blocks[0:2].attn2", "spatial_attn", "cross_attn", "text_kv"],
        ),
        (
            "hunyuan-video",
            [
                "blocks[1:2]",
                "single_transformer_blocks[0:1]",
                "transformer_blocks[0:1].attn",
                "transformer_blocks[0:1].ff",
                "transformer_blocks[0:1].ff_context",
                "single_transformer_blocks[0:1].attn",
                "single_transformer_blocks[0:1].proj_mlp",
                "spatial_attn",
            ],
        ),
        (
            "stable-audio",
            [
                "blocks[1:2]",
                "transformer_blocks[0:2].attn1",
                "transformer_blocks[0:2].attn2",
                "transformer_blocks[0:2].ff",
                "spatial_attn",
                "cross_attn",
                "text_kv",
            ],
        ),
    ],
)
def test_transformers_offer_the_dit_regions_then_the_attention_kinds(name: str, expected: list[str]) -> None:
    assert offered(av_models.TRANSFORMERS[name]()) == expected


def test_hunyuan_video_attention_runs_through_both_block_lists() -> None:
    kinds = kind_modules(av_models.tiny_hunyuan_video())
    assert kinds == {"spatial_attn": ("transformer_blocks.0.attn", "single_transformer_blocks.0.attn")}


def test_svd_kinds_split_its_spatio_temporal_transformers() -> None:
    kinds = kind_modules(unet_models.tiny_svd_unet())
    assert all(
        path.endswith("transformer_blocks.0.attn1") and ".temporal_" not in path for path in kinds["spatial_attn"]
    )
    assert all(".temporal_transformer_blocks.0.attn1" in path for path in kinds["temporal_attn"])
    # both the spatial and the temporal blocks attend to the image embedding
    assert {path.rsplit(".", 3)[-3] for path in kinds["cross_attn"]} == {
        "transformer_blocks",
        "temporal_transformer_blocks",
    }
    assert len(kinds["cross_attn"]) == 2 * len(kinds["spatial_attn"])


@pytest.mark.parametrize(
    ("build", "temporal_list"),
    [(unet_models.tiny_unet3d, "temp_attentions"), (unet_models.tiny_motion_unet, "motion_modules")],
)
def test_video_unet_temporal_layers_are_temporal_attention(build, temporal_list: str) -> None:
    """AnimateDiff's motion modules run two self-attentions over frames; UNet3D's one."""
    kinds = kind_modules(build())
    assert all(f".{temporal_list}." in path for path in kinds["temporal_attn"])
    assert not any(f".{temporal_list}." in path for kind in ("spatial_attn", "cross_attn") for path in kinds[kind])
    assert all(path.endswith("attn2") for path in kinds["cross_attn"])


def test_unet_kinds_follow_execution_order() -> None:
    """The mid block runs between the down and up blocks, though registered after both."""
    for modules in kind_modules(unet_models.tiny_motion_unet()).values():
        sections = [path.split(".")[0] for path in modules]
        assert sections == sorted(sections, key=["down_blocks", "mid_block", "up_blocks"].index)


def test_attention_a_unet_block_holds_itself_counts() -> None:
    """UNet2DModel's attention blocks hold ``Attention`` modules directly, not inside a transformer."""
    kinds = kind_modules(unet_models.tiny_unet2d())
    assert {path.split(".")[0] for path in kinds["spatial_attn"]} == {"down_blocks", "mid_block", "up_blocks"}
    assert "down_blocks.1.attentions.0" in kinds["spatial_attn"]


def test_audioldm_attn2_attends_to_the_latent() -> None:
    """AudioLDM and MusicLDM pass no cross-attention context: both attentions are self-attentions."""
    kinds = kind_modules(unet_models.tiny_audioldm_unet())
    assert list(kinds) == ["spatial_attn"]
    assert {path.rsplit(".", 1)[1] for path in kinds["spatial_attn"]} == {"attn1", "attn2"}


def test_audioldm2_cross_attention_only_where_a_context_is_given() -> None:
    """Each AudioLDM 2 layer runs a self-attention-only transformer, then one per text context."""
    unet = unet_models.tiny_audioldm2_unet()
    kinds = kind_modules(unet)
    for path in kinds["cross_attn"]:
        assert unet.get_submodule(path).is_cross_attention
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2" in kinds["spatial_attn"]


def test_image_unets_have_the_kinds_by_name_only() -> None:
    unet = unet_models.tiny_sd_unet()
    assert offered(unet) == [*(f"branch{k}" for k in range(12)), "text_kv"]
    with cachekit.cached(unet, {"regions": ["cross_attn"]}) as handle:
        assert len(handle.regions["cross_attn"].modules) == 16


def test_dit_names_work_on_video_transformers() -> None:
    wan = av_models.tiny_wan()
    with cachekit.cached(wan, {"regions": ["blocks[0:2].ffn"]}) as handle:
        assert handle.regions["blocks[0:2].ffn"].modules == ("blocks.0.ffn", "blocks.1.ffn")
    with pytest.raises(RegionNotFoundError, match="out of range"):
        cachekit.enable(wan, {"regions": ["blocks[0:5]"]})


def test_a_kind_inside_a_selected_block_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        cachekit.enable(av_models.tiny_wan(), {"regions": ["blocks[1:2]", "cross_attn"]})


def test_a_kind_the_model_lacks_lists_the_available_regions() -> None:
    with pytest.raises(RegionNotFoundError, match="'spatial_attn'") as error:
        cachekit.enable(av_models.tiny_cogvideox(), {"regions": ["cross_attn"]})
    assert "blocks[1:2]" in str(error.value)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=av_models.MOCHI_AUTOCAST if name == "mochi" else ()) for name in av_models.TRANSFORMERS],
)
def test_example_inputs_measure_every_region(name: str) -> None:
    """The example call runs and every offered region does some of its FLOPs."""
    model = av_models.TRANSFORMERS[name]()
    regions = load_plugins().hook.cachekit_regions(model=model)
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None
    shares = region_flop_shares(model, regions, (), kwargs)
    assert all(0 < share < 1 for share in shares.values()), shares
