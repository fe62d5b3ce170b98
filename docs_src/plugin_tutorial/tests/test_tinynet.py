"""cachekit-tinynet passes cachekit's adapter conformance suite, on both of its regions."""

from __future__ import annotations

from typing import Any

import cachekit
import pytest
import torch
from cachekit import load_plugins
from cachekit.testing import AdapterConformance
from torch import nn

from cachekit_tinynet import plugin, tinynet


class TinyNetCase(AdapterConformance):
    """How the suite builds a TinyNet and its inputs (not collected: the name has no Test)."""

    def make_model(self) -> nn.Module:
        return tinynet(seed=0)

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed)
        return {"sample": torch.randn(batch_size, 3, 8, 8, generator=generator)}


class TestTinyNet(TinyNetCase):
    """Every conformance check on the default region, plus checks of the plugin's own."""

    def test_default_region_is_inner_blocks(self) -> None:
        with cachekit.enable(self.make_model()) as handle:
            assert list(handle.regions) == ["inner-blocks"]
            assert handle.regions["inner-blocks"].modules == ("blocks.1", "blocks.2")

    def test_other_models_are_not_ours(self) -> None:
        assert plugin.cachekit_regions(nn.Linear(2, 2)) is None
        assert plugin.cachekit_example_inputs(nn.Linear(2, 2)) is None

    def test_example_inputs_run_the_model(self) -> None:
        model = self.make_model()
        args, kwargs = load_plugins().hook.cachekit_example_inputs(model=model)
        assert model(*args, **kwargs).shape == args[0].shape

    @pytest.mark.parametrize(("threshold", "refreshes"), [(1e-9, 6), (1e9, 1)])
    def test_similarity_probes_the_first_block(self, threshold: float, refreshes: int) -> None:
        """The probe_base makes the residual of blocks.0 a probe: a tiny threshold refreshes
        at every step, a huge one only at the warm-up step."""
        model = self.make_model()
        policy = {"kind": "similarity", "probe": "entry_residual", "threshold": threshold}
        with cachekit.enable(model, {"policy": policy}) as handle:
            self.generate(model, self.make_inputs(model, 1, seed=0))
        assert handle.stats["inner-blocks"].refreshes == refreshes


class TestTinyNetAllBlocks(TinyNetCase):
    """The conformance checks with the other region, selected by name."""

    config = {"regions": ["all-blocks"]}
