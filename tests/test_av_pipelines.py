"""End to end: the video and audio pipelines with tiny seeded components and classifier-free
guidance, text encoders bypassed with prompt embeddings.

Every pipeline runs its default region at interval 2 and its attention kinds each at their
own interval (PAB's pyramid: spatial 2, temporal 3, cross 4). "Skips compute" is proved by
counting the calls of every module inside each region; fidelity is bounded by a tenth of what
changing the seed does to the output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit import CacheHandle
from cachekit.experiments.metrics import relative_l1
from cachekit.modules import get_submodule
from cachekit.plugin_manager import load_plugins
from tests import av_models, unet_models
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 8
KIND_INTERVALS = {"spatial_attn": 2, "temporal_attn": 3, "cross_attn": 4}


def _video_unet(build: Callable[[], Any], arguments: dict[str, Any]) -> Callable[[], tuple[Any, dict[str, Any]]]:
    """A video UNet pipeline of :mod:`tests.unet_models` with the arguments of a latent call."""
    return lambda: (build(), {**arguments, "num_frames": 2, "height": 8, "width": 8, "output_type": "latent"})


PIPELINES = {
    **av_models.PIPELINES,
    "stable video diffusion": _video_unet(
        unet_models.svd_pipeline, {"image": torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))}
    ),
    "text-to-video": _video_unet(
        lambda: unet_models.video_pipeline("TextToVideoSDPipeline"), unet_models.prompt_embeds(8)
    ),
    "animatediff": _video_unet(lambda: unet_models.video_pipeline("AnimateDiffPipeline"), unet_models.prompt_embeds(8)),
}
DEFAULT_REGIONS = {
    **dict.fromkeys(("cogvideox", "wan", "ltx", "hunyuan-video", "mochi", "stable-audio"), "blocks[1:2]"),
    **dict.fromkeys(("audioldm", "musicldm", "audioldm2"), "branch0"),
}
"""Default regions of the pipelines; the video UNets' (``branch0``) is tested end to end in
``tests/test_unet_pipelines.py``."""
KINDS = {
    "cogvideox": ("spatial_attn",),
    "wan": ("spatial_attn", "cross_attn"),
    "ltx": ("spatial_attn", "cross_attn"),
    "hunyuan-video": ("spatial_attn",),
    "mochi": ("spatial_attn",),
    "stable-audio": ("spatial_attn", "cross_attn"),
    "audioldm": ("spatial_attn",),
    "musicldm": ("spatial_attn",),
    "audioldm2": ("spatial_attn", "cross_attn"),
    "stable video diffusion": ("spatial_attn", "temporal_attn", "cross_attn"),
    "text-to-video": ("spatial_attn", "temporal_attn", "cross_attn"),
    "animatediff": ("spatial_attn", "temporal_attn", "cross_attn"),
}
"""The attention kinds each pipeline's denoiser offers."""
SEPARATE_CFG_CALLS = {"wan": 2, "hunyuan-video": 2}
"""Pipelines that call the denoiser once per CFG branch (one context each)."""


@dataclass
class Case:
    name: str
    pipe: Any
    kwargs: dict[str, Any]
    reference: torch.Tensor
    other_seed: torch.Tensor

    def run(self) -> torch.Tensor:
        return av_models.run_pipeline(self.pipe, self.kwargs, STEPS)

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipe, "transformer", None) or self.pipe.unet

    @property
    def contexts(self) -> int:
        return SEPARATE_CFG_CALLS.get(self.name, 1)

    def tolerance(self) -> float:
        """A tenth of the relative L1 between the uncached outputs of two seeds."""
        return 0.1 * relative_l1(self.other_seed, self.reference)


def cases(names: list[str]) -> list[Any]:
    """Pipeline names as parameters, Mochi's with its warning filter."""
    return [pytest.param(name, marks=av_models.MOCHI_AUTOCAST if name == "mochi" else ()) for name in names]


@pytest.fixture(scope="module", params=cases(list(PIPELINES)))
def case(request: pytest.FixtureRequest) -> Case:
    pipe, kwargs = PIPELINES[request.param]()
    reference = av_models.run_pipeline(pipe, kwargs, STEPS)
    return Case(request.param, pipe, kwargs, reference, av_models.run_pipeline(pipe, kwargs, STEPS, seed=1))


def inner_calls(handle: CacheHandle, run: Callable[[], torch.Tensor]) -> tuple[dict[str, int], Any]:
    """Calls of every module inside each region of ``handle`` during ``run()``, and its result."""
    calls = dict.fromkeys(handle.regions, 0)

    def count(*_: Any, name: str) -> None:
        calls[name] += 1

    hooks = [
        module.register_forward_pre_hook(functools.partial(count, name=runner.stats_name))
        for runtime in handle.runtimes
        for runner in runtime.runners
        for path in runner.region.modules
        for child, module in get_submodule(runtime.denoiser.module, path).named_modules()
        if child
    ]
    try:
        result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return calls, result


def assert_skips_and_stays_close(case: Case, config: dict[str, Any], intervals: dict[str, int]) -> None:
    """Each region refreshes every ``intervals[name]`` steps in every context, its modules run on
    refreshes only, and the output stays within the case's tolerance."""
    always_refresh = {**config, "policy": {"kind": "uniform", "interval": 1}, "region_policies": {}}
    with cachekit.cached(case.pipe, always_refresh) as always:
        per_refresh, output = inner_calls(always, case.run)
    assert torch.equal(output, case.reference), "always refreshing changed the output"
    with cachekit.cached(case.pipe, config) as handle:
        calls, output = inner_calls(handle, case.run)
    for name, interval in intervals.items():
        for context in range(case.contexts):
            assert handle.stats.refresh_steps(name, context) == list(range(0, STEPS, interval)), name
        refreshes = handle.stats[name].refreshes
        assert calls[name] == refreshes * per_refresh[name] // always.stats[name].refreshes, name
    error = relative_l1(output, case.reference)
    assert 0 < error < case.tolerance(), f"relative L1 {error:.4f}, tolerance {case.tolerance():.4f}"
    assert torch.equal(case.run(), case.reference), "disable() did not restore the pipeline"


@pytest.mark.parametrize("case", cases(list(DEFAULT_REGIONS)), indirect=True)
def test_default_region_at_interval_2(case: Case) -> None:
    with cachekit.cached(case.pipe) as handle:
        assert list(handle.regions) == [DEFAULT_REGIONS[case.name]]
    assert_skips_and_stays_close(case, {"policy": {"kind": "uniform", "interval": 2}}, {DEFAULT_REGIONS[case.name]: 2})


def test_attention_kinds_with_their_own_policies(case: Case) -> None:
    kinds = KINDS[case.name]
    named = load_plugins().hook.cachekit_region_named
    assert tuple(kind for kind in KIND_INTERVALS if named(model=case.denoiser, name=kind) is not None) == kinds
    config = {
        "regions": list(kinds),
        "region_policies": {kind: {"kind": "uniform", "interval": KIND_INTERVALS[kind]} for kind in kinds},
    }
    assert_skips_and_stays_close(case, config, {kind: KIND_INTERVALS[kind] for kind in kinds})
