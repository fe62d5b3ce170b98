"""The adapter conformance suite on every transformer the DiT plugin maps, tiny and seeded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from cachekit_dit.inputs import EXAMPLES
from torch import nn

from cachekit.testing import AdapterConformance
from tests import dit_models


class DiTConformance(AdapterConformance):
    """Conformance of a transformer built by ``build``, driven with the plugin's example inputs
    and one timestep per sample (as diffusers pipelines and the DiT paper's sampler pass them)."""

    sample_key = "hidden_states"
    build: Callable[[], nn.Module]

    def make_model(self) -> nn.Module:
        return type(self).build()

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        kwargs = EXAMPLES.kwargs(model, batch_size, seed)
        assert kwargs is not None
        return kwargs

    def generate(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        self.batch_size = inputs[self.sample_key].shape[0]
        return super().generate(model, inputs)

    def timestep(self, index: int) -> torch.Tensor:
        return super().timestep(index).float().expand(self.batch_size)


# Region names in ``config`` are among the offered ones: check 6 expects a bad name's error to
# list every selected region, and names with other ranges are built on request, not listed.


class TestDiT(DiTConformance):
    build = staticmethod(dit_models.tiny_dit)


class TestDiTSublayers(TestDiT):
    config = {"regions": ["transformer_blocks[0:4].attn1", "transformer_blocks[0:4].ff"]}


class TestPixArt(DiTConformance):
    build = staticmethod(dit_models.tiny_pixart)


class TestSD3(DiTConformance):
    """The default range ends at SD3's last block, which returns no text stream."""

    build = staticmethod(dit_models.tiny_sd3)


class TestSana(DiTConformance):
    build = staticmethod(dit_models.tiny_sana)


class TestHunyuanDiT(DiTConformance):
    build = staticmethod(dit_models.tiny_hunyuan)


class TestFlux(DiTConformance):
    """The default range runs from the second dual-stream block through every single-stream one."""

    build = staticmethod(dit_models.tiny_flux)
    ids: dict[str, torch.Tensor]

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        kwargs = super().make_inputs(model, batch_size, seed)
        self.ids = {name: kwargs.pop(name) for name in ("img_ids", "txt_ids")}  # not batched: kept out of slicing
        return kwargs

    def generate(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        return super().generate(model, {**inputs, **self.ids})


class TestFluxPerListRanges(TestFlux):
    config = {"regions": ["transformer_blocks[1:2]", "single_transformer_blocks[0:2]"]}


class TestFluxSublayers(TestFlux):
    config = {
        "regions": [
            "transformer_blocks[0:2].attn",
            "transformer_blocks[0:2].ff_context",
            "single_transformer_blocks[0:2].attn",
        ]
    }


class TestBria(TestFlux):
    build = staticmethod(lambda: dit_models.tiny_flux_kin("BriaTransformer2DModel"))


class TestLongCatImage(TestFlux):
    build = staticmethod(lambda: dit_models.tiny_flux_kin("LongCatImageTransformer2DModel"))


class TestOvisImage(TestFlux):
    build = staticmethod(lambda: dit_models.tiny_flux_kin("OvisImageTransformer2DModel"))


class TestTimmStyleDiT(DiTConformance):
    """A DiT-paper-style model of the user's own: no config beyond the policy."""

    build = staticmethod(dit_models.timm_dit)
    sample_key = "x"
    timestep_key = "t"


class TestTimmStyleDiTSublayers(TestTimmStyleDiT):
    config = {"regions": ["blocks[0:4].attn", "blocks[0:4].mlp"]}
