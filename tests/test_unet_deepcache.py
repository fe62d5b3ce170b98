"""cachekit against the DeepCache package (0.1.1): the same branches, outputs and schedules.

DeepCache is a small pure-Python package in the ``dev`` extra; without it these tests skip.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from cachekit_unet.inputs import example_inputs
from torch import nn

import cachekit
from cachekit.policies import NonUniformPolicy
from tests.unet_models import one_thread, prompt_embeds, sd15_unet, sd_pipeline, tiny_sd_unet  # noqa: F401

DeepCache = pytest.importorskip("DeepCache")
from DeepCache import DeepCacheSDHelper  # noqa: E402


def deepcache_helper(pipe: Any, interval: int, branch: int) -> DeepCacheSDHelper:
    """DeepCache's helper enabled on ``pipe`` (anything with ``unet`` and ``scheduler.timesteps``)."""
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    return helper


def leaves_called(model: nn.Module, run: Callable[[], Any]) -> tuple[set[str], Any]:
    """Names of the modules without children that ``run()`` calls, and what it returns."""
    called: set[str] = set()
    hooks = [
        module.register_forward_pre_hook(lambda *_, name=name: called.add(name))
        for name, module in model.named_modules()
        if not any(module.children())
    ]
    try:
        result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return called, result


def refresh_then_reuse(unet: nn.Module, enable: Callable[[], Any]) -> tuple[set[str], torch.Tensor]:
    """Two calls at timesteps 999 then 500 with caching at interval 2: what the reuse call runs."""
    kwargs = example_inputs(unet)[1]
    sample = kwargs.pop("sample")
    kwargs.pop("timestep")
    undo = enable()
    try:
        with torch.no_grad():
            unet(sample, torch.tensor(999), **kwargs)
            return leaves_called(unet, lambda: unet(sample, torch.tensor(500), **kwargs).sample)
    finally:
        undo()


@pytest.mark.parametrize("branch", range(12))
def test_each_branch_runs_and_returns_what_deepcache_does(branch: int) -> None:
    """On a reuse step, branch k runs the very modules DeepCache's cache_branch_id=k runs."""
    unet = tiny_sd_unet()
    fake_pipe = SimpleNamespace(unet=unet, scheduler=SimpleNamespace(timesteps=torch.tensor([999, 500])))

    def with_deepcache() -> Callable[[], None]:
        return deepcache_helper(fake_pipe, interval=2, branch=branch).disable

    def with_cachekit() -> Callable[[], None]:
        config = {"policy": {"kind": "uniform", "interval": 2}, "regions": [f"branch{branch}"]}
        return cachekit.enable(unet, config).disable

    theirs, their_output = refresh_then_reuse(unet, with_deepcache)
    ours, our_output = refresh_then_reuse(unet, with_cachekit)
    everything = {name for name, module in unet.named_modules() if not any(module.children())}
    assert ours < everything, "the reuse call ran everything: nothing was skipped"
    assert ours == theirs, f"runs only in cachekit: {ours - theirs}; only in DeepCache: {theirs - ours}"
    assert torch.equal(our_output, their_output)


@pytest.mark.slow
@pytest.mark.parametrize(("interval", "branch"), [(3, 0), (5, 4)])
def test_sd15_layout_ddim_50_steps_with_cfg_equals_deepcache(interval: int, branch: int) -> None:
    """The SD 1.5 block layout at reduced widths, DDIM 50 steps, batched CFG: same latents."""
    pipe = sd_pipeline(sd15_unet(sample_size=8))
    call = {**prompt_embeds(32), "num_inference_steps": 50, "guidance_scale": 7.5, "output_type": "latent"}

    def generate() -> torch.Tensor:
        return pipe(**call, generator=torch.Generator().manual_seed(0)).images

    uncached = generate()
    helper = deepcache_helper(pipe, interval, branch)
    theirs = generate()
    helper.disable()
    config = {"policy": {"kind": "uniform", "interval": interval}, "regions": [f"branch{branch}"]}
    with cachekit.cached(pipe, config) as handle:
        ours = generate()
    assert handle.stats.refresh_steps(f"branch{branch}") == list(range(0, 50, interval))
    assert not torch.allclose(theirs, uncached, atol=1e-3), "DeepCache changed nothing: the comparison is empty"
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def deepcache_quad_center() -> Callable[..., tuple[list[int], float]]:
    """DeepCache's own ``sample_from_quad_center``, taken from its source file.

    Its module imports names diffusers 0.42 no longer has, so the function is compiled alone.
    """
    path = Path(DeepCache.__file__).parent / "sd" / "pipeline_stable_diffusion.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(node for node in tree.body if getattr(node, "name", "") == "sample_from_quad_center")
    namespace: dict[str, Any] = {"np": np}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["sample_from_quad_center"]


def deepcache_nonuniform_steps(num_steps: int, interval: int, center: int, power: float) -> list[int]:
    """The refresh steps of DeepCache's SD pipeline with ``uniform=False`` (its budget rule too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)  # DeepCache casts complex to int
        steps, _ = deepcache_quad_center()(num_steps, math.ceil(num_steps / interval), center=center, pow=power)
    return sorted(int(step) for step in steps)


@pytest.mark.parametrize("num_steps", [20, 25, 50, 100])
@pytest.mark.parametrize("interval", [2, 3, 5])
@pytest.mark.parametrize(("center", "power"), [(15, 1.4), (10, 1.2), (5, 1.6)])
def test_nonuniform_refresh_steps_equal_deepcache_quad_center(
    num_steps: int, interval: int, center: int, power: float
) -> None:
    policy = NonUniformPolicy(interval=interval, center=center, power=power)
    assert policy.refresh_steps(num_steps) == deepcache_nonuniform_steps(num_steps, interval, center, power)


@pytest.mark.slow
def test_nonuniform_on_a_pipeline_refreshes_at_deepcache_steps() -> None:
    pipe = sd_pipeline()
    with cachekit.cached(pipe, {"policy": {"kind": "nonuniform", "interval": 3, "center": 15, "power": 1.4}}) as handle:
        pipe(**prompt_embeds(8), num_inference_steps=50, output_type="latent")
    assert handle.stats.refresh_steps("branch0") == deepcache_nonuniform_steps(50, 3, 15, 1.4)
