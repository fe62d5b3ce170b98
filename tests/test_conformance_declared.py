"""The conformance suite on a plain nn.Module with regions declared in the config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cachekit.testing import AdapterConformance
from tests.models import MIDDLE, tiny_transformer


class TestDeclaredResidualRegion(AdapterConformance):
    config = MIDDLE

    def make_model(self) -> nn.Module:
        return tiny_transformer()

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed)
        return {"sample": torch.randn(batch_size, 8, 4, generator=generator)}


class TestDeclaredOutputRegion(TestDeclaredResidualRegion):
    config = {"declare": [{"name": "tail", "entry": "blocks.2", "exit": "blocks.5", "mode": "output"}]}


class TestTwoDisjointRegions(TestDeclaredResidualRegion):
    config = {
        "declare": [
            {"name": "early", "entry": "blocks.1", "exit": "blocks.2"},
            {"name": "late", "entry": "blocks.3", "exit": "blocks.4", "mode": "output", "inner": "replay"},
        ]
    }
