"""The ``text_kv`` region: cross-attention keys and values computed once per generation and
context, the output bit-identical to uncached, on every model that offers it.

Models: an SD-1.5-layout and an SDXL-layout UNet, PixArt and Sana (DiT plugin), Wan (audio-video
plugin), all tiny and seeded. Projections are counted by a wrapper set on each one's ``forward``
before cachekit's, so it counts the computations, not the calls a cache answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit import ConfigError, RegionNotFoundError
from tests.av_models import tiny_cogvideox, tiny_ltx, tiny_wan
from tests.dit_models import tiny_flux, tiny_hunyuan, tiny_pixart, tiny_sana, tiny_sd3
from tests.unet_models import one_thread, tiny_sd_unet, tiny_sdxl_unet  # noqa: F401  (autouse fixture)

STEPS = 6
POLICIES = {
    "uniform": {"kind": "uniform", "interval": 2},
    "nonuniform": {"kind": "nonuniform", "interval": 2},
    "similarity": {"kind": "similarity", "threshold": 0.3, "warmup_steps": 1},
}


def _unet_inputs(model: nn.Module, batch: int, seed: int) -> dict[str, Any]:
    from cachekit_unet.inputs import example_inputs

    _, kwargs = example_inputs(model, batch_size=batch, seed=seed)
    return kwargs


def _dit_inputs(model: nn.Module, batch: int, seed: int) -> dict[str, Any]:
    from cachekit_dit.inputs import EXAMPLES

    return EXAMPLES.kwargs(model, batch, seed) or {}


def _av_inputs(model: nn.Module, batch: int, seed: int) -> dict[str, Any]:
    from cachekit_av.inputs import EXAMPLES

    return EXAMPLES.kwargs(model, batch, seed) or {}


@dataclass(frozen=True)
class Case:
    """A model offering ``text_kv``, how to call it, and a block region to compose with."""

    build: Callable[[], nn.Module]
    inputs: Callable[[nn.Module, int, int], dict[str, Any]]
    block: str
    sample: str = "hidden_states"


CASES = {
    "sd15": Case(tiny_sd_unet, _unet_inputs, "branch1", "sample"),
    "sdxl": Case(tiny_sdxl_unet, _unet_inputs, "branch4", "sample"),
    "pixart": Case(tiny_pixart, _dit_inputs, "blocks[1:4]"),
    "sana": Case(tiny_sana, _dit_inputs, "blocks[1:4]"),
    "hunyuan": Case(tiny_hunyuan, _dit_inputs, "blocks[1:6]"),
    "wan": Case(tiny_wan, _av_inputs, "blocks[1:2]"),
    "ltx": Case(tiny_ltx, _av_inputs, "blocks[1:2]"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Case, nn.Module]:
    spec = CASES[request.param]
    return spec, spec.build()


def _conditioning(spec: Case, model: nn.Module, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    """The starting sample and everything else of a call but the timestep."""
    kwargs = spec.inputs(model, batch, seed)
    kwargs.pop("timestep")
    return kwargs.pop(spec.sample), kwargs


@torch.no_grad()
def generate(
    spec: Case,
    model: nn.Module,
    sample: torch.Tensor,
    contexts: list[dict[str, Any]],
    steps: int = STEPS,
    between: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """A bare loop: each step calls the model once per context (CFG as separate calls when
    there are two), then ``between(step)``."""
    for index, timestep in enumerate(torch.linspace(1000, 0, steps)):
        outputs = []
        for context in contexts:
            output = model(**context, **{spec.sample: sample, "timestep": timestep.expand(len(sample))})
            outputs.append((output if isinstance(output, torch.Tensor) else output[0])[:, : sample.shape[1]])
        sample = sample - 0.1 * sum(outputs) / len(outputs)
        if between is not None:
            between(index)
    return sample


def projections(model: nn.Module) -> list[str]:
    """The modules the plugins' ``text_kv`` covers on ``model``."""
    regions = cachekit.load_plugins().hook.cachekit_regions(model=model)
    return list(next(region for region in regions if region.name == "text_kv").modules)


@contextmanager
def counted(model: nn.Module, paths: list[str]) -> Iterator[list[int]]:
    """Count the computations of the modules at ``paths`` (a wrapper under cachekit's)."""
    calls = [0]
    modules = [model.get_submodule(path) for path in paths]
    for module in modules:
        original = module.forward

        def forward(*args: Any, original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            calls[0] += 1
            return original(*args, **kwargs)

        module.forward = forward
    try:
        yield calls
    finally:
        for module in modules:
            del module.forward


def test_offered_last_on_every_model_with_cross_attention(case: tuple[Case, nn.Module]) -> None:
    spec, model = case
    regions = cachekit.load_plugins().hook.cachekit_regions(model=model)
    assert regions[-1].name == "text_kv" and regions[-1].mode == "keyed"
    assert regions[0].name != "text_kv"
    assert all(path.rsplit(".", 1)[1] in ("to_k", "to_v") for path in regions[-1].modules)
    assert len(regions[-1].modules) >= 4


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_output_is_bit_identical_alone_and_beside_a_block_region(case: tuple[Case, nn.Module], policy: str) -> None:
    spec, model = case
    sample, context = _conditioning(spec, model)
    uncached = generate(spec, model, sample, [context])
    with cachekit.cached(model, {"regions": ["text_kv"], "policy": POLICIES[policy], "num_steps": STEPS}):
        alone = generate(spec, model, sample, [context])
    with cachekit.cached(model, {"regions": [spec.block], "policy": POLICIES[policy], "num_steps": STEPS}) as handle:
        block = generate(spec, model, sample, [context])
    assert handle.stats.reuses > 0, "the block region must reuse for the comparison to mean anything"
    config = {"regions": [spec.block, "text_kv"], "policy": POLICIES[policy], "num_steps": STEPS}
    with cachekit.cached(model, config) as handle:
        both = generate(spec, model, sample, [context])
    assert torch.equal(alone, uncached)
    assert torch.equal(both, block)
    assert handle.stats["text_kv"].reuses > 0  # (a block refresh of some rows alone gives it other inputs)


@pytest.mark.parametrize("cfg", ["batch", "separate"])
def test_projections_run_once_per_generation_and_context(case: tuple[Case, nn.Module], cfg: str) -> None:
    spec, model = case
    paths = projections(model)
    if cfg == "batch":
        sample, context = _conditioning(spec, model)
        contexts = [context]
    else:
        sample, negative = _conditioning(spec, model, batch=1, seed=1)
        contexts = [negative, _conditioning(spec, model, batch=1, seed=2)[1]]
    with counted(model, paths) as calls:
        uncached = generate(spec, model, sample, contexts)
        assert calls[0] == STEPS * len(contexts) * len(paths)
        calls[0] = 0
        with cachekit.cached(model, {"regions": ["text_kv"], "num_steps": STEPS}) as handle:
            cached = generate(spec, model, sample, contexts)
            assert calls[0] == len(contexts) * len(paths)
            stats = handle.stats["text_kv"]
            assert (stats.refreshes, stats.reuses) == (len(contexts), (STEPS - 1) * len(contexts))
            assert handle.cache_bytes > 0
    assert torch.equal(cached, uncached)


def test_a_new_prompt_a_new_generation_and_changed_states_recompute(case: tuple[Case, nn.Module]) -> None:
    spec, model = case
    paths = projections(model)
    sample, context = _conditioning(spec, model)
    _, other = _conditioning(spec, model, seed=5)
    text = context["encoder_hidden_states"]

    def change(step: int) -> None:  # the same tensor, at the same address, changed in place
        if step == 2:
            text.mul_(-1)

    saved = text.clone()
    uncached_changed = generate(spec, model, sample, [context], between=change)
    text.copy_(saved)
    uncached_other = generate(spec, model, sample, [other])
    with counted(model, paths) as calls, cachekit.cached(model, {"regions": ["text_kv"], "num_steps": STEPS}):
        generate(spec, model, sample, [context])
        assert calls[0] == len(paths)
        assert torch.equal(generate(spec, model, sample, [other]), uncached_other)  # a new prompt
        assert calls[0] == 2 * len(paths)
        generate(spec, model, sample, [other])  # the same prompt again: a new generation
        assert calls[0] == 3 * len(paths)
        assert torch.equal(generate(spec, model, sample, [context], between=change), uncached_changed)
        assert calls[0] == 5 * len(paths)  # at the first step, and after the change


def test_disable_restores_the_model_and_frees_the_memory(case: tuple[Case, nn.Module]) -> None:
    spec, model = case
    sample, context = _conditioning(spec, model)
    uncached = generate(spec, model, sample, [context])
    handle = cachekit.enable(model, {"regions": ["text_kv"], "num_steps": STEPS})
    generate(spec, model, sample, [context])
    view = handle.views["text_kv"]
    assert view.cache_bytes > 0
    handle.disable()
    assert view.cache_bytes == 0 and handle.cache_bytes == 0
    assert all("forward" not in vars(model.get_submodule(path)) for path in projections(model))
    assert torch.equal(generate(spec, model, sample, [context]), uncached)


def test_the_memory_is_freed_at_the_end_of_a_pipeline_generation() -> None:
    from tests.unet_models import prompt_embeds, sd_pipeline

    pipe = sd_pipeline()
    embeds = prompt_embeds(8, tokens=7)
    run = {**embeds, "num_inference_steps": STEPS, "output_type": "latent", "guidance_scale": 5.0}
    uncached = pipe(**run, generator=torch.Generator().manual_seed(0)).images
    with cachekit.cached(pipe, {"regions": ["text_kv"]}) as handle:
        cached = pipe(**run, generator=torch.Generator().manual_seed(0)).images
        assert handle.cache_bytes == 0
        assert handle.stats["text_kv"].refreshes == 1  # batched CFG: one context
    assert torch.equal(cached, uncached)


def test_it_may_sit_inside_a_block_region_but_keeps_no_policy() -> None:
    model = tiny_sd_unet()
    with pytest.raises(ConfigError, match="region_policies names 'text_kv', keyed on exact inputs"):
        cachekit.enable(model, {"regions": ["branch0", "text_kv"], "region_policies": {"text_kv": "uniform"}})
    handle = cachekit.enable(model, {"regions": ["branch0", "text_kv"]})  # nothing was left enabled
    assert set(handle.regions) == {"branch0", "text_kv"}
    handle.disable()


@pytest.mark.parametrize("build", [tiny_flux, tiny_sd3, tiny_cogvideox], ids=["flux", "sd3", "cogvideox"])
def test_joint_attention_is_refused_saying_why(build: Callable[[], nn.Module]) -> None:
    model = build()
    assert all(region.name != "text_kv" for region in cachekit.load_plugins().hook.cachekit_regions(model=model))
    with pytest.raises(RegionNotFoundError, match=r"'text_kv' is not offered for \w+: its attention is joint"):
        cachekit.enable(model, {"regions": ["text_kv"]})
