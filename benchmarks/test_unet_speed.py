"""Speed of DeepCache's branch caching on an SD 1.5 UNet: cachekit, DeepCache, diffusers' PAB.

Run: ``pytest benchmarks/test_unet_speed.py --benchmark-enable -s``. A Stable Diffusion
pipeline with the SD 1.5 block layout (random weights, no text encoder: prompt embeddings
are passed in) runs DDIM with batched CFG; every setting is timed side by side in one process
(interleaved rounds) on the same seed, and printed with its refresh count, its fidelity to
the uncached latents and two ceilings: ``1 / (share of the UNet's FLOPs still computed)``, and
the same with branch 0's share of the UNet's *time* (on a CPU the full-resolution attention
left outside branch 0 costs more time than its FLOPs say).

The default layout has reduced widths (64/128/256/256, 32x32 latent, 50 steps) so that it
runs on a laptop CPU in minutes. ``--device cuda`` runs it on a GPU, timed by CUDA events
(``scripts/gpu_benchmarks.sh`` runs it at SD 1.5's widths, 64x64 latent); ``--tables DIR``
writes the table as Markdown. Environment variables select other sizes:

* ``CACHEKIT_UNET_BENCH_WIDTHS=full``: SD 1.5's widths (320/640/1280/1280); ``tiny``:
  32/32/64/64 (smoke tests);
* ``CACHEKIT_UNET_BENCH_LATENT`` (default 32) and ``CACHEKIT_UNET_BENCH_STEPS`` (default 50);
* ``CACHEKIT_UNET_BENCH_ROUNDS`` (default 3): timed rounds per setting;
* ``CACHEKIT_UNET_BENCH_CLOCK=cpu``: on a CPU, time by the process's CPU time instead of wall
  time, steadier on a machine others share (run with ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from cachekit_unet import cachekit_regions
from cachekit_unet.inputs import example_inputs

import cachekit
from benchmarks import tables
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_medians
from cachekit.experiments.metrics import psnr, relative_l1
from cachekit.flops import region_flop_shares
from cachekit.modules import get_submodule
from tests.unet_models import SD15_WIDTHS, prompt_embeds, sd15_unet, sd_pipeline

WIDTHS = {"full": SD15_WIDTHS, "tiny": (32, 32, 64, 64)}.get(
    os.environ.get("CACHEKIT_UNET_BENCH_WIDTHS", ""), (64, 128, 256, 256)
)
LATENT = int(os.environ.get("CACHEKIT_UNET_BENCH_LATENT", "32"))
STEPS = int(os.environ.get("CACHEKIT_UNET_BENCH_STEPS", "50"))
ROUNDS = int(os.environ.get("CACHEKIT_UNET_BENCH_ROUNDS", "3"))
CLOCK = time.process_time if os.environ.get("CACHEKIT_UNET_BENCH_CLOCK") == "cpu" else time.perf_counter
CONTEXT = 768
INTERVALS = (3, 5)


def _pipeline() -> Any:
    return current().model(sd_pipeline(sd15_unet(WIDTHS, cross_attention_dim=CONTEXT, sample_size=LATENT)))


def _generate(pipe: Any) -> torch.Tensor:
    return pipe(
        **current().inputs(prompt_embeds(CONTEXT)),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).images


def _branch0_shares(pipe: Any) -> tuple[float, float]:
    """Branch 0's share of one UNet forward (batch 2: the CFG batch): of its FLOPs, and of its
    time (median of 5 uncached forwards, timed at the branch's entry and exit; CUDA events on a GPU)."""
    unet = pipe.unet
    branch0 = cachekit_regions(unet)[0]
    args, kwargs = current().inputs(example_inputs(unet, batch_size=2))
    flops = region_flop_shares(unet, [branch0], args, kwargs)["branch0"]
    branch, whole = current().timer(CLOCK), current().timer(CLOCK)
    hooks = [
        get_submodule(unet, branch0.entry).register_forward_pre_hook(lambda *_: branch.start()),
        get_submodule(unet, branch0.exit).register_forward_hook(lambda *_: branch.stop()),
    ]
    shares = []
    try:
        with torch.no_grad():
            for _ in range(5):
                whole.start()
                unet(*args, **kwargs)
                whole.stop()
                total = whole.lap()
                shares.append(branch.lap() / total)
    finally:
        for hook in hooks:
            hook.remove()
    return flops, statistics.median(shares)


def _cachekit(pipe: Any, interval: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": interval}, "regions": ["branch0"]}):
            return _generate(pipe)

    return run


def _deepcache(pipe: Any, interval: int) -> Callable[[], torch.Tensor]:
    from DeepCache import DeepCacheSDHelper

    def run() -> torch.Tensor:
        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=interval, cache_branch_id=0)
        helper.enable()
        try:
            return _generate(pipe)
        finally:
            helper.disable()

    return run


def _pyramid_attention_broadcast(pipe: Any) -> Callable[[], torch.Tensor]:
    """diffusers' PAB hook on a copy of the UNet (spatial every 2 steps, cross every 6, the
    paper's ranges) in a pipeline sharing every other component."""
    from diffusers import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    unet = copy.deepcopy(pipe.unet)
    latest: dict[str, int] = {}
    unet.register_forward_pre_hook(lambda _module, args: latest.update(t=int(args[1])))
    config = PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2,
        cross_attention_block_skip_range=6,
        current_timestep_callback=lambda: latest["t"],
    )
    apply_pyramid_attention_broadcast(unet, config)
    pab_pipe = type(pipe)(**{**pipe.components, "unet": unet}, requires_safety_checker=False)
    pab_pipe.set_progress_bar_config(disable=True)
    return lambda: _generate(pab_pipe)


def _table(
    table: str, pipe: Any, candidates: dict[str, Callable[[], torch.Tensor]], refreshes: dict[str, int]
) -> list[dict]:
    """Time every candidate side by side; each row also holds the FLOP ceiling and fidelity.
    The table is printed, and written as ``<table>.md`` with ``--tables``."""
    flop_share, time_share = _branch0_shares(pipe)
    outputs = {name: run() for name, run in candidates.items()}  # also the warm-up round
    medians = interleaved_medians(candidates, rounds=ROUNDS, warmup=0, clock=CLOCK)
    rows = []
    for name in candidates:
        reused = 1 - refreshes[name] / STEPS if name in refreshes else None
        rows.append(
            {
                "setting": name,
                "speedup": medians["none"] / medians[name],
                "refreshes": refreshes.get(name),
                "ceiling": None if reused is None else 1 / (1 - flop_share * reused),
                "time_ceiling": None if reused is None else 1 / (1 - time_share * reused),
                "psnr": psnr(outputs[name], outputs["none"]),
                "relative_l1": relative_l1(outputs[name], outputs["none"]),
            }
        )
    title = (
        f"SD 1.5 layout, widths {WIDTHS}, {LATENT}x{LATENT} latent, DDIM {STEPS} steps, CFG, "
        f"on {current().describe()}; "
        f"branch 0 holds {100 * flop_share:.1f}% of the UNet's FLOPs and {100 * time_share:.1f}% of its time; "
        f"medians of {ROUNDS} rounds of {'CUDA events' if current().is_cuda else CLOCK.__name__}"
    )
    headers = ("setting", "speedup", "ceiling", "of ceiling", "time ceiling", "refreshes", "PSNR dB", "rel L1")
    tables.emit(table, title, headers, [_cells(row) for row in rows])
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    """A row's table cells; ``of ceiling`` is the share of the FLOP ceiling the speedup reaches."""
    ceiling, time_ceiling = row["ceiling"], row["time_ceiling"]
    return [
        row["setting"],
        f"{row['speedup']:.2f}x",
        f"{ceiling:.2f}x" if ceiling else "-",
        f"{100 * row['speedup'] / ceiling:.1f}%" if ceiling else "-",
        f"{time_ceiling:.2f}x" if time_ceiling else "-",
        "-" if row["refreshes"] is None else str(row["refreshes"]),
        f"{row['psnr']:.1f}",
        f"{row['relative_l1']:.4f}",
    ]


def _refresh_count(interval: int) -> int:
    return len(range(0, STEPS, interval))


def test_unet_speed(benchmark: Any) -> None:
    """No cache, cachekit at intervals 3 and 5 on branch 0, and diffusers' PAB on the same UNet."""
    torch.manual_seed(0)
    pipe = _pipeline()
    candidates = {"none": lambda: _generate(pipe)}
    refreshes = {"none": STEPS}
    for interval in INTERVALS:
        candidates[f"cachekit uniform {interval}"] = _cachekit(pipe, interval)
        refreshes[f"cachekit uniform {interval}"] = _refresh_count(interval)
    candidates["diffusers PAB"] = _pyramid_attention_broadcast(pipe)
    rows = _table("unet_speed", pipe, candidates, refreshes)
    benchmark.extra_info.update({row["setting"]: row for row in rows})
    benchmark.pedantic(candidates[f"cachekit uniform {INTERVALS[0]}"], rounds=1, iterations=1)


def test_unet_speed_against_deepcache(benchmark: Any) -> None:
    """No cache, cachekit and DeepCache 0.1.1 side by side at intervals 3 and 5, branch 0."""
    pytest.importorskip("DeepCache")
    torch.manual_seed(0)
    pipe = _pipeline()
    candidates = {"none": lambda: _generate(pipe)}
    refreshes = {"none": STEPS}
    for interval in INTERVALS:
        for tool, make in (("cachekit", _cachekit), ("DeepCache", _deepcache)):
            candidates[f"{tool} uniform {interval}"] = make(pipe, interval)
            refreshes[f"{tool} uniform {interval}"] = _refresh_count(interval)
    rows = _table("unet_speed_deepcache", pipe, candidates, refreshes)
    benchmark.extra_info.update({row["setting"]: row for row in rows})
    benchmark.pedantic(candidates[f"DeepCache uniform {INTERVALS[0]}"], rounds=1, iterations=1)
