"""Steps counted right where DeepCache counts them wrong.

DeepCache's helper finds the step as ``scheduler.timesteps.index(t)`` and keeps one cache for
every call. That index is not the step when a scheduler repeats timesteps (PNDM, SD 1.5's
default) or calls the UNet twice per step (Heun, KDPM2); its start step survives from one
generation to the next; and CFG run as two calls shares one cache. cachekit counts steps
from the scheduler's own calls and keeps a cache per context and generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import torch

import cachekit
from tests.unet_models import deep_calls, one_thread, prompt_embeds, sd_pipeline  # noqa: F401

STEPS = 10
INTERVAL = 3
CACHEKIT_REFRESH_STEPS = [0, 3, 6, 9]
CALLS_PER_STEP = {
    "DDIMScheduler": [1] * STEPS,
    "PNDMScheduler": [2] + [1] * (STEPS - 1),  # 11 calls, the second timestep twice
    "HeunDiscreteScheduler": [2] * (STEPS - 1) + [1],  # 19 calls; the last step is Euler's
    "KDPM2DiscreteScheduler": [2] * (STEPS - 1) + [1],  # 19 calls at interpolated timesteps
}
DEEPCACHE_REFRESH_CALLS = {
    "DDIMScheduler": [0, 3, 6, 9],
    # timesteps.index(t) per call is 0, 1, 1, 3, 4, ...: refreshes land on steps 0, 2, 5, 8
    "PNDMScheduler": [0, 3, 6, 9],
    # index per call is 0, 1, 1, 3, 3, 5, 5, ...: calls of steps 0, 1, 2, 4, 5, 7, 8 refresh
    "HeunDiscreteScheduler": [0, 3, 4, 9, 10, 15, 16],
    # index per call is the call: every third call refreshes, half a step apart
    "KDPM2DiscreteScheduler": [0, 3, 6, 9, 12, 15, 18],
}
UNIFORM = {"policy": {"kind": "uniform", "interval": INTERVAL}}


def calls_of(steps: list[int], calls_per_step: list[int]) -> list[int]:
    """Indices of the UNet calls that belong to ``steps``."""
    starts = [sum(calls_per_step[:step]) for step in range(len(calls_per_step))]
    return [starts[step] + call for step in steps for call in range(calls_per_step[step])]


@contextmanager
def deepcache(pipe: Any, interval: int = INTERVAL, branch: int = 0) -> Iterator[None]:
    """DeepCache's helper enabled on ``pipe`` for a ``with`` block."""
    from DeepCache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        yield
    finally:
        helper.disable()


def generate(pipe: Any, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    """Latents of a 10-step generation with batched CFG and ``prompt_embeds`` standing in for text."""
    call = {**prompt_embeds(8, seed), "num_inference_steps": STEPS, "output_type": "latent", **kwargs}
    return pipe(**call, generator=torch.Generator().manual_seed(seed)).images


@pytest.mark.parametrize("scheduler_name", list(CALLS_PER_STEP))
def test_refresh_steps_follow_the_scheduler_where_deepcache_shifts_them(scheduler_name: str) -> None:
    pipe = sd_pipeline(scheduler_name=scheduler_name)
    with cachekit.cached(pipe, UNIFORM) as handle:
        ours, _ = deep_calls(pipe.unet, lambda: generate(pipe))
    assert handle.stats.refresh_steps("branch0") == CACHEKIT_REFRESH_STEPS
    assert ours == calls_of(CACHEKIT_REFRESH_STEPS, CALLS_PER_STEP[scheduler_name])
    pytest.importorskip("DeepCache")
    with deepcache(pipe):
        theirs, _ = deep_calls(pipe.unet, lambda: generate(pipe))
    assert theirs == DEEPCACHE_REFRESH_CALLS[scheduler_name]
    assert (theirs == ours) == (scheduler_name == "DDIMScheduler")


def test_img2img_partial_schedule_counts_its_own_steps() -> None:
    """Strength 0.6 of 10 steps runs the last 6: the nonuniform schedule of 6 steps, not of 10."""
    pipe = sd_pipeline(kind="Img2Img")
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    policy = cachekit.NonUniformPolicy(interval=2, center=1)
    with cachekit.cached(pipe, policy) as handle:
        deep, _ = deep_calls(pipe.unet, lambda: generate(pipe, image=image, strength=0.6))
    assert policy.refresh_steps(6) != [step for step in policy.refresh_steps(STEPS) if step < 6]
    assert handle.stats.refresh_steps("branch0") == policy.refresh_steps(6)
    assert deep == policy.refresh_steps(6)


def consecutive_generations(pipe: Any) -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """Text-to-image, then img2img at strength 0.6, then text-to-image at another size and prompt."""
    img2img = type(pipe).__name__.replace("Pipeline", "Img2ImgPipeline")
    import diffusers

    second = getattr(diffusers, img2img)(**pipe.components, requires_safety_checker=False)
    second.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    return [
        ("text-to-image", lambda: generate(pipe)),
        ("img2img", lambda: generate(second, image=image, strength=0.6)),
        ("text-to-image 16x16", lambda: generate(pipe, seed=1, height=16, width=16)),
    ]


def run_in_turn(enabled: Callable[[], AbstractContextManager[Any]], pipe: Any) -> dict[str, torch.Tensor]:
    """Every generation of :func:`consecutive_generations` in one enabled session."""
    with enabled():
        return {name: run() for name, run in consecutive_generations(pipe)}


def run_fresh(enabled: Callable[[], AbstractContextManager[Any]], pipe: Any) -> dict[str, torch.Tensor]:
    """Every generation of :func:`consecutive_generations`, each in a session of its own."""
    outputs = {}
    for name, run in consecutive_generations(pipe):
        with enabled():
            outputs[name] = run()
    return outputs


def test_consecutive_generations_never_reuse_a_stale_cache() -> None:
    pipe = sd_pipeline()

    def ours() -> AbstractContextManager[Any]:
        return cachekit.cached(pipe, UNIFORM)

    in_turn, fresh = run_in_turn(ours, pipe), run_fresh(ours, pipe)
    for name in fresh:
        assert torch.equal(in_turn[name], fresh[name]), name
    pytest.importorskip("DeepCache")

    def theirs() -> AbstractContextManager[Any]:
        return deepcache(pipe)

    in_turn, fresh = run_in_turn(theirs, pipe), run_fresh(theirs, pipe)
    # DeepCache keeps the first generation's start index: the img2img run starts at index 4,
    # 4 % 3 != 0, so its first call reuses the text-to-image run's features.
    assert not torch.allclose(in_turn["img2img"], fresh["img2img"], atol=1e-3)


def denoise(pipe: Any, separate_cfg: bool, guidance: float = 7.5) -> torch.Tensor:
    """A DDIM loop over ``pipe``'s UNet and scheduler with CFG batched or as two calls per step."""
    embeds = prompt_embeds(8)
    negative, positive = embeds["negative_prompt_embeds"], embeds["prompt_embeds"]
    scheduler, unet = pipe.scheduler, pipe.unet
    scheduler.set_timesteps(STEPS)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(latents, t)
            if separate_cfg:
                uncond = unet(x, t, encoder_hidden_states=negative).sample
                cond = unet(x, t, encoder_hidden_states=positive).sample
            else:
                both = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, positive])).sample
                uncond, cond = both.chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
    return latents


def test_cfg_as_two_calls_keeps_a_cache_per_branch() -> None:
    """Two calls per step cache as one batched call does; DeepCache feeds cond uncond's features."""
    pipe = sd_pipeline()
    with cachekit.cached(pipe, UNIFORM) as handle:
        separate = denoise(pipe, separate_cfg=True)
    assert handle.stats.refresh_steps("branch0", context=1) == CACHEKIT_REFRESH_STEPS
    with cachekit.cached(pipe, UNIFORM):
        batched = denoise(pipe, separate_cfg=False)
    assert not torch.allclose(batched, denoise(pipe, separate_cfg=False), atol=1e-3), "caching changed nothing"
    # Latents average |6.7|; two calls and one batched call differ by 2.6e-5 without any cache.
    torch.testing.assert_close(separate, batched, atol=1e-4, rtol=0)
    pytest.importorskip("DeepCache")
    with deepcache(pipe):
        theirs_separate = denoise(pipe, separate_cfg=True)
    with deepcache(pipe):
        theirs_batched = denoise(pipe, separate_cfg=False)
    torch.testing.assert_close(theirs_batched, batched, atol=1e-5, rtol=0)
    assert not torch.allclose(theirs_separate, theirs_batched, atol=0.1)
