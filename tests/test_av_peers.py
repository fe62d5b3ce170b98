"""cachekit's attention kinds against diffusers' own Pyramid Attention Broadcast (PAB).

With PAB's timestep window opened to every step, "skip N" means "recompute every N-th call",
which is cachekit's ``uniform`` policy with interval N on the matching attention kind: the
outputs must be bit-identical. Two differences are pinned down here: diffusers' PAB counts
calls, not steps, and shares one cache between the CFG branches when they run as separate
calls (Wan), so the equality holds there without CFG only; and it takes LTX's ``attn2`` for
a self-attention (``LTXAttention`` has no ``is_cross_attention``), so LTX is compared with
cachekit's spatial and cross kinds at the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import cachekit
from tests.av_models import cogvideox_pipeline, ltx_pipeline, run_pipeline, wan_pipeline
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 8
EVERY_STEP = (-1, 10_000)
"""A PAB timestep window holding every timestep (its bounds are exclusive)."""


def with_diffusers_pab(pipe: Any, kwargs: dict[str, Any], **skips: int) -> torch.Tensor:
    """The pipeline's output under diffusers' PAB with the given ``<kind>_attention_block_skip_range``s."""
    from diffusers import PyramidAttentionBroadcastConfig

    windows = {f"{kind}_attention_timestep_skip_range": EVERY_STEP for kind in ("spatial", "temporal", "cross")}
    ranges = {f"{kind}_attention_block_skip_range": skip for kind, skip in skips.items()}
    config = PyramidAttentionBroadcastConfig(
        **ranges, **windows, current_timestep_callback=lambda: pipe.current_timestep
    )
    pipe.transformer.enable_cache(config)
    try:
        return run_pipeline(pipe, kwargs, STEPS)
    finally:
        pipe.transformer.disable_cache()


CASES: dict[str, tuple[Callable[[], tuple[Any, dict[str, Any]]], dict[str, Any], dict[str, int], dict[str, int]]] = {
    "cogvideox, batched CFG": (cogvideox_pipeline, {}, {"spatial_attn": 2}, {"spatial": 2}),
    "wan, no CFG": (
        wan_pipeline,
        {"guidance_scale": 1.0},
        {"spatial_attn": 2, "cross_attn": 3},
        {"spatial": 2, "cross": 3},
    ),
    "ltx, batched CFG": (ltx_pipeline, {}, {"spatial_attn": 2, "cross_attn": 2}, {"spatial": 2}),
}
"""Pipeline, call overrides, cachekit's interval per kind, diffusers' skip range per kind."""


@pytest.mark.parametrize("name", list(CASES))
def test_attention_kinds_equal_diffusers_pab(name: str) -> None:
    build, overrides, intervals, skips = CASES[name]
    pipe, kwargs = build()
    kwargs = {**kwargs, **overrides}
    uncached = run_pipeline(pipe, kwargs, STEPS)
    config = {
        "regions": list(intervals),
        "region_policies": {kind: {"kind": "uniform", "interval": interval} for kind, interval in intervals.items()},
    }
    with cachekit.cached(pipe, config) as handle:
        ours = run_pipeline(pipe, kwargs, STEPS)
    theirs = with_diffusers_pab(pipe, kwargs, **skips)
    assert handle.stats.reuses > 0
    assert not torch.equal(ours, uncached), "nothing was reused: the comparison would be empty"
    assert torch.equal(ours, theirs)
