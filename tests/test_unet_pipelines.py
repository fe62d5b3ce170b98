"""Every UNet pipeline end to end on CPU: one line enables caching on the pipeline's UNet.

Each pipeline is built from tiny seeded components (no text encoder: prompt embeddings are
passed in) and run for 10 steps with batched CFG where it has CFG, decoding included. The
weights are random, so the fidelity bounds only catch a broken reuse (latent pipelines land
at 0.6% to 1.5% relative L1); fidelity proper is the equality with DeepCache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import cachekit
from cachekit.experiments.metrics import relative_l1
from tests.unet_models import (  # noqa: F401  (one_thread: autouse fixture)
    deep_calls,
    one_thread,
    prompt_embeds,
    sd_pipeline,
    sdxl_embeds,
    sdxl_pipeline,
    svd_pipeline,
    tiny_controlnet,
    tiny_sd_unet,
    unet2d_pipeline,
    video_pipeline,
)

STEPS = 10
INTERVAL = 3


def image() -> torch.Tensor:
    """An 8x8 RGB input image in [0, 1]."""
    return torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def mask() -> torch.Tensor:
    """An inpainting mask over the right half."""
    return torch.zeros(1, 1, 8, 8).index_fill_(3, torch.arange(4, 8), 1.0)


@dataclass(frozen=True)
class Case:
    """A pipeline, the arguments of one call, and how many steps that call runs."""

    build: Callable[[], Any]
    arguments: Callable[[], dict[str, Any]]
    steps: int = STEPS
    output: str = "images"
    tolerance: float = 0.05
    """Bound on the relative L1 of the cached output against the uncached one."""


SIZE = {"height": 8, "width": 8}
CASES = {
    "text-to-image": Case(sd_pipeline, lambda: prompt_embeds(8)),
    "img2img": Case(
        lambda: sd_pipeline(kind="Img2Img"), lambda: {**prompt_embeds(8), "image": image(), "strength": 0.6}, steps=6
    ),
    "inpainting": Case(
        lambda: sd_pipeline(tiny_sd_unet(in_channels=9), kind="Inpaint"),
        lambda: {**prompt_embeds(8), "image": image(), "mask_image": mask(), **SIZE},
    ),
    "controlnet": Case(
        lambda: sd_pipeline(kind="ControlNet", controlnet=tiny_controlnet()),
        lambda: {**prompt_embeds(8), "image": image()},
    ),
    "sdxl": Case(sdxl_pipeline, lambda: {**sdxl_embeds(), **SIZE}),
    # Pixel-space UNet2DModel with random weights: its prediction changes a lot from step to
    # step, so reusing branch 0 (most of a 2-block UNet) moves the output far (0.07 and 0.71).
    "ddpm": Case(lambda: unet2d_pipeline("DDPM"), dict, tolerance=0.2),
    "ddim": Case(lambda: unet2d_pipeline("DDIM"), dict, tolerance=1.0),
    "stable video diffusion": Case(
        svd_pipeline, lambda: {"image": image(), "num_frames": 2, "decode_chunk_size": 2, **SIZE}, output="frames"
    ),
    "text-to-video": Case(
        lambda: video_pipeline("TextToVideoSDPipeline"),
        lambda: {**prompt_embeds(8), "num_frames": 2, **SIZE},
        output="frames",
    ),
    "animatediff": Case(
        lambda: video_pipeline("AnimateDiffPipeline"),
        lambda: {**prompt_embeds(8), "num_frames": 2, **SIZE},
        output="frames",
    ),
}


def generate(pipe: Any, case: Case) -> torch.Tensor:
    """The decoded output of one seeded call, as a float tensor."""
    result = pipe(
        **case.arguments(), num_inference_steps=STEPS, output_type="np", generator=torch.Generator().manual_seed(0)
    )
    return torch.from_numpy(np.asarray(getattr(result, case.output), dtype=np.float64))


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_end_to_end(name: str) -> None:
    case = CASES[name]
    pipe = case.build()
    uncached = generate(pipe, case)
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 1}}):
        assert torch.equal(generate(pipe, case), uncached), "always refreshing changed the output"
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": INTERVAL}}) as handle:
        deep, cached = deep_calls(pipe.unet, lambda: generate(pipe, case))
    refresh_steps = list(range(0, case.steps, INTERVAL))
    assert list(handle.regions) == ["branch0"]
    assert handle.stats.refresh_steps("branch0") == refresh_steps
    assert deep == refresh_steps, "the deep half computed on a reuse step (or not on a refresh)"
    error = relative_l1(cached, uncached)
    print(name, error)
    assert error > 0
    assert torch.equal(generate(pipe, case), uncached), "disable() did not restore the pipeline"
