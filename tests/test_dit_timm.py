"""timm for real: a DiT built from timm's ``PatchEmbed``, ``Attention`` and ``Mlp`` as in the DiT
paper's code, and timm's ``VisionTransformer`` made a denoiser, through region detection, every
policy kind and the conformance suite.

timm imports torchvision, which imports only beside the torch it was built with; the project's
CPU torch 2.13 has none at hand, so these tests skip in the main environment and CI runs them
in a second one (torch 2.14.1 and torchvision 0.29.1: ``.ci/timm_requirements.py``).
``tests/dit_models.py`` carries layers shaped like timm's, which the other DiT tests use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

try:
    import timm  # noqa: F401
except (ImportError, RuntimeError, OSError) as error:  # a torchvision of another torch fails at import
    pytest.skip(
        f"timm does not import here ({type(error).__name__}: {error}); it needs a torchvision built for "
        "the installed torch: CI runs these tests in its timm environment (.ci/timm_requirements.py)",
        allow_module_level=True,
    )

from cachekit_dit.inputs import EXAMPLES  # noqa: E402
from timm.layers import Mlp  # noqa: E402
from timm.models.vision_transformer import Attention, Block, VisionTransformer  # noqa: E402
from torch import nn  # noqa: E402

import cachekit  # noqa: E402
from cachekit.calibration.calibrate import calibrate_model  # noqa: E402
from cachekit.plugin_manager import load_plugins  # noqa: E402
from cachekit.policies import policy_kinds  # noqa: E402
from tests import dit_models, timm_models  # noqa: E402
from tests.test_dit_conformance import DiTConformance  # noqa: E402
from tests.unet_models import one_thread  # noqa: E402, F401  (autouse fixture: one CPU thread)

MODELS = {"timm-layers DiT": timm_models.timm_layers_dit, "timm ViT denoiser": timm_models.vit_denoiser}
STEPS = 8

# --- the conformance suite ---------------------------------------------------------------------


class TestTimmLayersDiT(DiTConformance):
    build = staticmethod(timm_models.timm_layers_dit)
    sample_key = "x"
    timestep_key = "t"


class TestTimmLayersDiTSublayers(TestTimmLayersDiT):
    config = {"regions": ["blocks[0:4].attn", "blocks[0:4].mlp"]}


class TestTimmViTDenoiser(TestTimmLayersDiT):
    build = staticmethod(timm_models.vit_denoiser)


class TestTimmViTDenoiserSublayers(TestTimmViTDenoiser):
    config = {"regions": ["blocks[0:4].attn", "blocks[0:4].mlp"]}


# --- region detection --------------------------------------------------------------------------


def regions_of(model: nn.Module) -> list[str]:
    return [region.name for region in load_plugins().hook.cachekit_regions(model=model)]


@pytest.mark.parametrize("name", list(MODELS))
def test_regions_are_found_on_timm_modules(name: str) -> None:
    """The block range and timm's own ``Attention`` and ``Mlp`` as sub-layer regions, no config."""
    model = MODELS[name]()
    assert regions_of(model) == ["blocks[1:4]", "blocks[0:4].attn", "blocks[0:4].mlp"]
    for block in model.blocks:
        assert isinstance(block.attn, Attention) and isinstance(block.mlp, Mlp)
    with cachekit.cached(model, {"regions": ["blocks[0:4].attn"]}) as handle:
        assert handle.regions["blocks[0:4].attn"].modules == tuple(f"blocks.{index}.attn" for index in range(4))


def test_a_plain_timm_vision_transformer_is_mapped_with_its_example_inputs() -> None:
    """timm's classifier ViT itself: its ``blocks`` (an ``nn.Sequential`` of timm ``Block``) are the
    trunk, its example call is ``x`` alone, and a cached call on it equals the uncached one."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=2, in_chans=3, num_classes=5, embed_dim=16, depth=3, num_heads=2)
    model.eval()
    assert isinstance(model.blocks, nn.Sequential) and all(isinstance(block, Block) for block in model.blocks)
    assert regions_of(model) == ["blocks[1:3]", "blocks[0:3].attn", "blocks[0:3].mlp"]
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None and set(kwargs) == {"x"} and kwargs["x"].shape == (1, 3, 8, 8)
    with torch.no_grad():
        reference = model(**kwargs)
        with cachekit.cached(model, {"policy": {"kind": "uniform", "interval": 1}}) as handle:
            assert torch.equal(model(**kwargs), reference)
    assert handle.stats.refreshes == 1


# --- every policy kind -------------------------------------------------------------------------

POLICIES: dict[str, dict[str, Any]] = {
    "uniform": {"policy": {"kind": "uniform", "interval": 2}},
    "uniform, forecast linear": {"policy": {"kind": "uniform", "interval": 2}, "forecast": "linear"},
    "nonuniform": {"policy": {"kind": "nonuniform", "interval": 2, "center": 4}, "num_steps": STEPS},
    "similarity on the entry input": {"policy": {"kind": "similarity", "threshold": 0.2}},
    "similarity on the first block": {"policy": {"kind": "similarity", "probe": "entry_residual", "threshold": 0.2}},
    "schedule": {"policy": {"kind": "schedule", "steps": [0, 1, 3, 5, 7]}},
    "calibrated, 3 refreshes": {"policy": {"kind": "calibrated", "budget": {"refreshes": 3}}, "num_steps": STEPS},
    "adaptive, 4 refreshes": {
        "policy": {"kind": "adaptive", "refreshes": 4, "probe": "entry_residual"},
        "num_steps": STEPS,
    },
}
"""A config of each policy kind (and a forecasting one), as a user writes it for these models; a
``calibrated`` one with a budget is calibrated first (:func:`ready`), as ``cachekit run`` does."""


def ready(config: dict[str, Any], model: nn.Module, folder: Path) -> dict[str, Any]:
    """``config``, its ``calibrated`` policy's budget replaced by a file calibrated on ``model``
    with two seeds the tests do not evaluate on (1 and 2)."""
    policy = config["policy"]
    if policy["kind"] != "calibrated":
        return config

    def generate() -> None:
        for seed in (1, 2):
            dit_models.denoise(model, EXAMPLES.kwargs(model, 1, seed), STEPS, sample_key="x", timestep_key="t")

    (calibration,) = calibrate_model(model, generate, policy["budget"]).values()
    return {**config, "policy": {"kind": "calibrated", "file": str(calibration.save(folder / "calibration.json"))}}


def test_every_policy_kind_has_a_config_here() -> None:
    load_plugins()
    shipped = {kind for kind, cls in policy_kinds().items() if not cls.__module__.startswith("tests")}
    assert shipped <= {config["policy"]["kind"] for config in POLICIES.values()}, "add the new kind to POLICIES"


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("name", list(MODELS))
def test_every_policy_reuses_and_stays_close(name: str, policy: str, tmp_path: Path) -> None:
    """Each policy reuses the default block range on timm's blocks, and the final sample stays
    within 2% relative L1 of the uncached one after 8 steps of the suite's toy sampler (0.01% to
    1.0% measured)."""
    model = MODELS[name]()
    kwargs = EXAMPLES.kwargs(model, 2, 0)
    assert kwargs is not None
    reference = dit_models.denoise(model, kwargs, STEPS, sample_key="x", timestep_key="t")
    with cachekit.cached(model, ready(POLICIES[policy], model, tmp_path)) as handle:
        output = dit_models.denoise(model, kwargs, STEPS, sample_key="x", timestep_key="t")
    assert list(handle.regions) == ["blocks[1:4]"]
    assert 0 < handle.stats.reuses < STEPS, handle.stats.hit_map()
    assert not torch.equal(output, reference)
    error = float((output - reference).abs().mean() / reference.abs().mean())
    assert error < 0.02, f"relative L1 {error:.4f}"
