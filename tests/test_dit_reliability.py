"""What the peers get wrong, checked on cachekit: a clean disable that leaves the model to
another cache, pipelines with and without batched CFG under every built-in policy, and
policies that cannot run saying so. (Fewer blocks than a default ``Fn``: see
``test_dit_regions.py``, which checks the adjustment and the enable-time errors.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from cachekit_dit.inputs import EXAMPLES

import cachekit
from cachekit.errors import ConfigError, PolicyError
from tests import dit_models

STEPS = 8


def snapshot(model: torch.nn.Module) -> dict[str, tuple[list[str], list[str]]]:
    """Each module's submodule order and instance attribute names."""
    return {name: (list(module._modules), sorted(vars(module))) for name, module in model.named_modules()}


def test_disable_leaves_nothing_and_another_cache_works_after() -> None:
    """cache-dit 1.5.3 leaves its patched forward and reorders ``_modules``, which then breaks
    diffusers' FirstBlockCache on the same model; after cachekit, FirstBlockCache gives the
    same output as on a model cachekit never touched."""
    from diffusers import FirstBlockCacheConfig

    pipe, call = dit_models.flux_pipeline()
    reference = dit_models.run_pipeline(pipe, call, STEPS)
    before = snapshot(pipe.transformer)  # after a run: the pipeline adds diffusers' hook registry itself
    with cachekit.cached(
        pipe, {"policy": {"kind": "similarity", "probe": "entry_residual", "threshold": 0.1}}
    ) as handle:
        dit_models.run_pipeline(pipe, call, STEPS)
    assert handle.stats.reuses > 0
    assert snapshot(pipe.transformer) == before
    assert torch.equal(dit_models.run_pipeline(pipe, call, STEPS), reference)

    untouched, _ = dit_models.flux_pipeline()
    outputs = []
    for candidate in (pipe, untouched):
        candidate.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2))
        try:
            outputs.append(dit_models.run_pipeline(candidate, call, STEPS))
        finally:
            candidate.transformer.disable_cache()
    assert not torch.equal(outputs[0], reference), "FirstBlockCache reused something"
    assert torch.equal(outputs[0], outputs[1])


POLICIES: dict[str, dict[str, Any]] = {
    "uniform": {"kind": "uniform", "interval": 2},
    "nonuniform": {"kind": "nonuniform", "interval": 2, "center": 4},
    "similarity-entry-input": {"kind": "similarity", "threshold": 0.2},
    "similarity-first-block": {"kind": "similarity", "probe": "entry_residual", "threshold": 0.2},
}


@pytest.mark.parametrize("pipeline", ["flux", "flux-true-cfg", "sd3"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_policy_reuses_with_and_without_batched_cfg(pipeline: str, policy: str) -> None:
    """Flux's embedded guidance (one call a step), its true CFG (two calls) and SD3's batched
    CFG: each built-in policy reuses in every context, and the output stays close."""
    pipe, call = dit_models.PIPELINES[pipeline]()
    reference = dit_models.run_pipeline(pipe, call, STEPS)
    with cachekit.cached(pipe, {"policy": POLICIES[policy]}) as handle:
        output = dit_models.run_pipeline(pipe, call, STEPS)
    stats = handle.stats["blocks[1:4]"]
    contexts = 2 if pipeline == "flux-true-cfg" else 1
    assert sorted(stats.hits) == list(range(contexts))
    for context in range(contexts):
        assert "." in "".join(stats.hits[context].values()), f"context {context} never reused"
    assert float((output - reference).abs().mean() / reference.abs().mean()) < 0.05


def test_a_policy_that_cannot_run_says_so() -> None:
    """``nonuniform`` needs the number of steps: a bare model gets a clear error, not a silent no-op."""
    model = dit_models.tiny_flux()
    kwargs = EXAMPLES.kwargs(model)
    assert kwargs is not None
    with (
        cachekit.cached(model, {"policy": {"kind": "nonuniform", "interval": 2, "center": 2}}),
        pytest.raises(PolicyError, match="num_steps"),
    ):
        dit_models.denoise(model, kwargs)
    with cachekit.cached(
        model, {"policy": {"kind": "nonuniform", "interval": 2, "center": 2}, "num_steps": 6}
    ) as handle:
        dit_models.denoise(model, kwargs)
    assert handle.stats.reuses == 3


def test_the_first_block_probe_needs_blocks_before_the_region() -> None:
    model = dit_models.tiny_pixart()
    for region in ("blocks[0:4]", "transformer_blocks[0:4].attn1"):
        with pytest.raises(ConfigError, match="probe 'entry_residual' needs region"):
            cachekit.enable(model, {"regions": [region], "policy": {"kind": "similarity", "probe": "entry_residual"}})
        assert "forward" not in vars(model)
