"""cachekit on quantized weights: torchao's int8 configs and torch's own dynamic int8 Linear, on CPU.

A tiny Flux transformer (time conditioning smoothed, as in ``test_dit_probes``) is quantized
before or after enabling. The DiT plugin still finds its regions, the ``similarity`` policy
refreshes exactly where the first block's residual (its ``entry_residual`` probe) says,
always refreshing equals no cache, and ``disable()`` restores the quantized model's output.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

import cachekit
from tests import dit_models
from tests.test_dit_probes import expected_refreshes, first_block_residuals, similarity
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture: one CPU thread)

STEPS = 10
THRESHOLD = 0.3
REGION = "blocks[1:4]"

# torch's eager quantization warns that it is deprecated in favour of torchao (tested here too)
TORCH_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"),
]


def torch_dynamic_int8(model: nn.Module) -> None:
    """torch's own dynamic quantization: every ``nn.Linear`` replaced by an int8 dynamic Linear."""
    torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


QUANTIZERS: dict[str, Callable[[nn.Module], Any]] = {
    "torchao int8 weight-only": lambda model: quantize_(model, Int8WeightOnlyConfig()),
    "torchao int8 dynamic": lambda model: quantize_(model, Int8DynamicActivationInt8WeightConfig()),
    "torch dynamic int8 Linear": torch_dynamic_int8,
}
TORCH_CASE = pytest.param("torch dynamic int8 Linear", marks=TORCH_DEPRECATIONS)
CASES = ["torchao int8 weight-only", "torchao int8 dynamic", TORCH_CASE]


@pytest.fixture(scope="module")
def flux() -> tuple[nn.Module, dict[str, Any]]:
    return dit_models.smooth_flux()


def quantized(flux: tuple[nn.Module, dict[str, Any]], name: str) -> nn.Module:
    """A quantized copy of the module's tiny Flux (the fixture's model stays as it is)."""
    model = copy.deepcopy(flux[0])
    QUANTIZERS[name](model)
    return model


@pytest.mark.parametrize("name", CASES)
def test_similarity_follows_the_probe_on_quantized_weights(name: str, flux: tuple[nn.Module, Any]) -> None:
    model, kwargs = quantized(flux, name), flux[1]
    plain = dit_models.denoise(model, kwargs, steps=STEPS)
    with first_block_residuals(model) as residuals, cachekit.cached(model, similarity(THRESHOLD)) as handle:
        dit_models.denoise(model, kwargs, steps=STEPS)
    refreshes = handle.stats.refresh_steps(REGION)
    assert refreshes == expected_refreshes(residuals, THRESHOLD)
    assert 1 < len(refreshes) < STEPS, f"threshold {THRESHOLD} should mix refreshes and reuses: {refreshes}"
    assert torch.equal(dit_models.denoise(model, kwargs, steps=STEPS), plain), "disable() did not restore"
    with cachekit.cached(model, {"policy": {"kind": "uniform", "interval": 1}}):
        assert torch.equal(dit_models.denoise(model, kwargs, steps=STEPS), plain), "always refreshing changed it"


@pytest.mark.parametrize("name", CASES)
def test_quantizing_after_enabling_caches_the_same(name: str, flux: tuple[nn.Module, Any]) -> None:
    kwargs, config = flux[1], similarity(THRESHOLD)
    model = quantized(flux, name)
    with cachekit.cached(model, config) as expected:
        wanted = dit_models.denoise(model, kwargs, steps=STEPS)
    model = copy.deepcopy(flux[0])
    with cachekit.cached(model, config) as handle:
        QUANTIZERS[name](model)
        output = dit_models.denoise(model, kwargs, steps=STEPS)
    assert handle.stats.refresh_steps(REGION) == expected.stats.refresh_steps(REGION)
    torch.testing.assert_close(output, wanted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [TORCH_CASE])
def test_a_quantized_copy_of_an_enabled_model_is_not_cached(name: str, flux: tuple[nn.Module, Any]) -> None:
    model, kwargs = copy.deepcopy(flux[0]), flux[1]
    with cachekit.cached(model, similarity(THRESHOLD)) as handle:
        copied = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)  # a copy
        output = dit_models.denoise(copied, kwargs, steps=STEPS)
    assert handle.stats.refreshes == handle.stats.reuses == 0
    assert torch.equal(output, dit_models.denoise(quantized(flux, name), kwargs, steps=STEPS))
