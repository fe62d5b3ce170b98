"""cachekit beside accelerate's and diffusers' offloading and layerwise casting, on CPU.

Each tool is applied to a tiny Stable Diffusion pipeline (or its bare UNet) either after
cachekit is enabled or before. Offloading on CPU moves nothing, so the cached output must
equal the cached output of a pipeline without offloading, always refreshing must equal no
cache, and ``disable()`` must restore the uncached output bit for bit while leaving the
other tool's hooks working. Sequential offloading is tested through accelerate's
``cpu_offload`` on the bare UNet: diffusers' ``enable_sequential_cpu_offload`` fails on CPU
without cachekit (accelerate cannot re-create a parameter on ``cpu:0``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit.engine.patching import Shadow
from tests.models import MIDDLE, tiny_inputs, tiny_transformer
from tests.unet_models import one_thread, prompt_embeds, sd_pipeline, tiny_sd_unet  # noqa: F401  (autouse fixture)

STEPS = 6
UNIFORM = {"policy": {"kind": "uniform", "interval": 3}}
ALWAYS = {"policy": {"kind": "uniform", "interval": 1}}
CPU = torch.device("cpu")
ORDERS = ("cachekit first", "cachekit last")


def generate(pipe: Any) -> torch.Tensor:
    """The final latents of one seeded 6-step call (no CFG, to keep it fast)."""
    generator = torch.Generator().manual_seed(0)
    call = {**prompt_embeds(8), "guidance_scale": 1.0, "output_type": "latent", "generator": generator}
    return pipe(**call, num_inference_steps=STEPS).images


@dataclass(frozen=True)
class Reference:
    """Outputs of a pipeline set up alike, with nothing else applied."""

    plain: torch.Tensor
    cached: torch.Tensor


def reference(setup: Callable[[Any], Any] = lambda pipe: None) -> Reference:
    """The uncached and the cached output of a fresh pipeline with ``setup`` applied."""
    pipe = sd_pipeline()
    setup(pipe)
    plain = generate(pipe)
    with cachekit.cached(pipe, UNIFORM):
        return Reference(plain, generate(pipe))


@pytest.fixture(scope="module")
def plain_pipeline() -> Reference:
    return reference()


def enable_beside(target: Any, setup: Callable[[Any], Any], order: str) -> cachekit.CacheHandle:
    """Enable cachekit (uniform, interval 3) and apply ``setup``, in ``order``."""
    if order == "cachekit first":
        handle = cachekit.enable(target, UNIFORM)
        setup(target)
        return handle
    setup(target)
    return cachekit.enable(target, UNIFORM)


def check_beside(pipe: Any, setup: Callable[[Any], Any], order: str, expected: Reference) -> None:
    """Cached output as expected, then ``disable()`` restores it, and always refreshing changes nothing."""
    handle = enable_beside(pipe, setup, order)
    cached = generate(pipe)
    assert handle.stats.refresh_steps("branch0") == [0, 3]
    handle.disable()
    torch.testing.assert_close(cached, expected.cached, rtol=1e-5, atol=1e-6)
    assert torch.equal(generate(pipe), expected.plain), "disable() did not restore the uncached output"
    with cachekit.cached(pipe, ALWAYS):  # enabled again, under the other tool's hooks now
        assert torch.equal(generate(pipe), expected.plain), "always refreshing changed the output"


def group_offload(offload_type: str, blocks: int | None = None) -> Callable[[Any], None]:
    """diffusers' group offloading of every pipeline component, onloading to the CPU."""
    return lambda pipe: pipe.enable_group_offload(
        onload_device=CPU, offload_device=CPU, offload_type=offload_type, num_blocks_per_group=blocks
    )


OFFLOADS: dict[str, Callable[[Any], None]] = {
    "model cpu offload": lambda pipe: pipe.enable_model_cpu_offload(device="cpu"),
    "group offload, block level": group_offload("block_level", 1),
    "group offload, leaf level": group_offload("leaf_level"),
}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(OFFLOADS))
def test_offloading_keeps_outputs_and_disable_restores(name: str, order: str, plain_pipeline: Reference) -> None:
    check_beside(sd_pipeline(), OFFLOADS[name], order, plain_pipeline)


def cast_to_float8(pipe: Any) -> None:
    """diffusers' layerwise casting: UNet weights stored in float8, computed in float32."""
    pipe.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)


@pytest.fixture(scope="module")
def cast_pipeline() -> Reference:
    return reference(cast_to_float8)


@pytest.mark.parametrize("order", ORDERS)
def test_layerwise_casting_keeps_outputs_and_disable_restores(order: str, cast_pipeline: Reference) -> None:
    check_beside(sd_pipeline(), cast_to_float8, order, cast_pipeline)


@contextmanager
def weights_missing_when_run(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the modules that computed while their offloading group was not loaded.

    diffusers' ``ModuleGroup.onload_`` and ``offload_`` are wrapped to remember which groups
    are loaded; a forward pre-hook on every module holding parameters checks its group. On a
    GPU such a module fails with a device error; on CPU it would silently run.
    """
    from diffusers.hooks.group_offloading import ModuleGroup

    from cachekit.engine.offloading import offload_group

    loaded: dict[int, bool] = {}
    for method, state in (("onload_", True), ("offload_", False)):
        original = getattr(ModuleGroup, method)

        def tracked(group: Any, original: Callable[[Any], None] = original, state: bool = state) -> None:
            loaded[id(group)] = state
            original(group)

        monkeypatch.setattr(ModuleGroup, method, tracked)
    missing: list[str] = []

    def owner_group(name: str) -> Any:
        parts = name.split(".") if name else []
        groups = (offload_group(model.get_submodule(".".join(parts[:end]))) for end in range(len(parts), -1, -1))
        return next(group for group in groups if group is not None)

    def check(name: str, group: Any) -> Callable[..., None]:
        return lambda *_: None if loaded.get(id(group)) else missing.append(name)

    holders = [(name, module) for name, module in model.named_modules() if list(module.parameters(recurse=False))]
    hooks = [module.register_forward_pre_hook(check(name, owner_group(name))) for name, module in holders]
    try:
        yield missing
    finally:
        for hook in hooks:
            hook.remove()


def denoise(unet: nn.Module) -> torch.Tensor:
    """A bare 6-step loop over the tiny SD UNet (batch 2, fixed text context)."""
    generator = torch.Generator().manual_seed(0)
    sample, context = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 77, 8, generator=generator)
    for timestep in torch.linspace(900, 100, STEPS):
        sample = sample - 0.1 * unet(sample, timestep, encoder_hidden_states=context).sample
    return sample


BARE = {**UNIFORM, "num_steps": STEPS}


def offload_two_blocks_a_group(unet: nn.Module) -> None:
    unet.enable_group_offload(onload_device=CPU, offload_device=CPU, num_blocks_per_group=2)


def test_groups_split_by_a_region_load_when_cachekit_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    unet = tiny_sd_unet()
    with cachekit.cached(unet, BARE) as handle:
        offload_two_blocks_a_group(unet)
        with weights_missing_when_run(unet, monkeypatch) as missing:
            denoise(unet)
    assert handle.stats.refresh_steps("branch0") == [0, 3]
    assert missing == []


def test_groups_split_by_a_region_are_refused_when_offloading_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    unet = tiny_sd_unet()
    offload_two_blocks_a_group(unet)
    with weights_missing_when_run(unet, monkeypatch) as missing:
        denoise(unet)
    assert missing == [], "the check below is only meaningful if the plain model loads every group"
    with pytest.raises(cachekit.UnsupportedCombinationError) as error:
        cachekit.enable(unet, BARE)
    message = str(error.value)
    assert "'up_blocks.2', 'up_blocks.3' as one group" in message and "region 'branch0' skips 'up_blocks.2'" in message
    assert "Enable cachekit first" in message and "num_blocks_per_group=1" in message
    assert cachekit.engine.handle.handle_of(unet) is None


@pytest.fixture(scope="module")
def plain_unet() -> Reference:
    unet = tiny_sd_unet()
    plain = denoise(unet)
    with cachekit.cached(unet, BARE):
        return Reference(plain, denoise(unet))


@pytest.mark.parametrize("order", ORDERS)
def test_accelerate_cpu_offload_hooks_keep_outputs_and_survive_disable(order: str, plain_unet: Reference) -> None:
    from accelerate import cpu_offload
    from accelerate.hooks import remove_hook_from_module

    unet = tiny_sd_unet()
    handle = enable_beside(unet, lambda model: cpu_offload(model, execution_device=CPU), order)
    assert next(unet.parameters()).device.type == "meta"  # weights live in accelerate's map
    torch.testing.assert_close(denoise(unet), plain_unet.cached, rtol=1e-5, atol=1e-6)
    handle.disable()
    assert isinstance(vars(unet)["forward"], functools.partial), "disable() removed accelerate's hook"
    remove_hook_from_module(unet, recurse=True)
    assert torch.equal(denoise(unet), plain_unet.plain)
    assert not isinstance(vars(unet).get("forward"), Shadow), "cachekit's hook outlived both tools"


def test_a_wrapper_installed_over_cachekit_stays_and_calls_through() -> None:
    model = tiny_transformer()
    args, _ = tiny_inputs()
    plain = model(*args)
    handle = cachekit.enable(model, {**MIDDLE, "num_steps": 1})
    calls: list[int] = []
    inner = model.forward

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return inner(*args, **kwargs)

    model.forward = wrapper
    handle.disable()
    assert model.forward is wrapper
    assert torch.equal(model(*args), plain) and calls == [1]
    assert handle.stats.refreshes == 0, "cachekit still ran after disable()"
    model.forward = inner  # the other tool removes its wrapper: cachekit's shadow is on top again
    assert torch.equal(model(*args), plain)
    assert "forward" not in vars(model)
