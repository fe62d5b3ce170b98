"""Speed and fidelity of caching on video and audio pipelines, with diffusers' own caches beside.

Run: ``pytest benchmarks/test_av_speed.py --benchmark-enable -s``. Each pipeline runs
``CACHEKIT_AV_BENCH_STEPS`` steps (default 20) from one seed with classifier-free guidance;
every setting's output is compared with the uncached one (PSNR, relative L1), the share of the
denoiser's FLOPs it still computes is counted on the pipeline's own call (``FlopCounterMode``),
and all settings are timed side by side (interleaved rounds, medians of the process's CPU
time on one thread, steadier than wall time on a shared machine). Refreshes
count the denoiser calls in which the second block (or the mid block) ran, whoever skipped it.
``--device cuda`` runs every pipeline on a GPU, timed by CUDA events.

Models have random weights with smoothed time conditioning (:func:`tests.dit_models.smooth_time`)
and no VAE (latents out) except Stable Audio's and AudioLDM 2's tiny ones (audio out):

* video transformers: CogVideoX, Wan 2.1, LTX-Video, HunyuanVideo and Mochi at width 128
  (4 heads of 32), 4 blocks (HunyuanVideo 2 + 2), 4 latent frames of 256 tokens in all;
  settings: cachekit's residual block range ``blocks[1:4]`` every 2 steps, its attention kinds
  as PAB's pyramid (spatial every 2 steps, cross every 4), its ``similarity`` policy on the
  first block's residual, and beside them diffusers' Pyramid Attention Broadcast with the same
  pyramid on every step and diffusers' First Block Cache;
* a text-to-video UNet3D (widths 32/64, 8 frames of 16x16): DeepCache's ``branch0`` every 3
  steps, the attention pyramid (spatial 2, temporal 4, cross 6), diffusers' PAB;
* Stable Audio's DiT (width 128, 4 blocks, 64 latent steps) and AudioLDM 2's UNet (widths
  32/64): the block range or ``branch0`` and the attention pyramid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_medians
from cachekit.experiments.metrics import psnr, relative_l1
from cachekit.flops import computed_flop_share, region_flop_shares
from cachekit.modules import get_submodule
from tests import av_models, unet_models
from tests.dit_models import smooth_time

STEPS = int(os.environ.get("CACHEKIT_AV_BENCH_STEPS", "20"))
ROUNDS = int(os.environ.get("CACHEKIT_AV_BENCH_ROUNDS", "3"))
WIDE = {"num_attention_heads": 4, "attention_head_dim": 32}
PYRAMID = {"spatial_attn": 2, "temporal_attn": 4, "cross_attn": 6}
"""PAB's pyramid over the attention kinds: intervals grow where attention changes least."""
VIDEO_DIT_PYRAMID = {"spatial_attn": 2, "cross_attn": 4}
SIMILARITY = {"kind": "similarity", "threshold": 0.2, "probe": "entry_residual", "refresh_last_steps": 1}
"""Refresh once the first block's residual has drifted by 0.2 in all (First Block Cache's signal)."""


def _uniform(interval: int) -> dict[str, Any]:
    return {"kind": "uniform", "interval": interval}


@dataclass
class Bench:
    """A pipeline, its call, the denoiser's module that marks a computed call, and the settings."""

    pipe: Any
    kwargs: dict[str, Any]
    marker: str
    output: Callable[[Any], torch.Tensor] = lambda result: torch.as_tensor(result.frames)
    settings: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """The pipeline and its call go to the benchmarks' device and dtype."""
        self.pipe, self.kwargs = current().model(self.pipe), current().inputs(self.kwargs)

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipe, "transformer", None) or self.pipe.unet

    def generate(self) -> torch.Tensor:
        result = self.pipe(**self.kwargs, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0))
        return self.output(result)

    def cachekit(self, name: str, config: dict[str, Any]) -> None:
        def run() -> torch.Tensor:
            with cachekit.cached(self.pipe, config):
                return self.generate()

        self.settings[f"cachekit {name}"] = run
        self.configs[f"cachekit {name}"] = config

    def diffusers(self, name: str, make_config: Callable[[], Any]) -> None:
        def run() -> torch.Tensor:
            self.denoiser.enable_cache(make_config())
            try:
                return self.generate()
            finally:
                self.denoiser.disable_cache()

        self.settings[f"diffusers {name}"] = run


def _pab(bench: Bench, **skips: int) -> Callable[[], Any]:
    """diffusers' PAB with the given skip ranges, its timestep windows open to every step."""

    def make() -> Any:
        from diffusers import PyramidAttentionBroadcastConfig

        every_step = {
            f"{kind}_attention_timestep_skip_range": (-1, 10_000) for kind in ("spatial", "temporal", "cross")
        }
        ranges = {f"{kind}_attention_block_skip_range": skip for kind, skip in skips.items()}
        return PyramidAttentionBroadcastConfig(
            **ranges, **every_step, current_timestep_callback=lambda: bench.pipe.current_timestep
        )

    return make


def _first_block_cache(threshold: float) -> Callable[[], Any]:
    def make() -> Any:
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=threshold)

    return make


# --- what a setting computes ----------------------------------------------------------------


def _first_call(bench: Bench) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of the pipeline's first denoiser call (for FLOP counting)."""
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def capture(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not captured:
            captured.append((args, kwargs))

    hook = bench.denoiser.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        bench.generate()
    finally:
        hook.remove()
    return captured[0]


def _computed_share(bench: Bench, config: dict[str, Any], call: tuple[tuple[Any, ...], dict[str, Any]]) -> float:
    """The share of the uncached denoiser FLOPs that ``config`` still computes."""
    with cachekit.cached(bench.pipe, config) as handle:
        bench.generate()
    shares = region_flop_shares(bench.denoiser, handle.regions.values(), *call)
    return computed_flop_share(shares, {name: stats.computed_share for name, stats in handle.stats.regions.items()})


def _computed_calls(bench: Bench, run: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Denoiser calls during ``run()`` in which the marker module computed, and the output."""
    marker = get_submodule(bench.denoiser, bench.marker)
    leaf = next(module for module in marker.modules() if not any(module.children()))
    calls: list[int] = []
    computed: set[int] = set()
    hooks = [
        bench.denoiser.register_forward_pre_hook(lambda *_: calls.append(len(calls))),
        leaf.register_forward_pre_hook(lambda *_: computed.add(calls[-1])),
    ]
    try:
        output = run()
    finally:
        for hook in hooks:
            hook.remove()
    return len(computed), output


def _table(title: str, bench: Bench) -> list[dict[str, Any]]:
    """Time every setting side by side and measure its fidelity, refreshes and FLOP share."""
    candidates = {"none": bench.generate, **bench.settings}
    call = _first_call(bench)
    rows = []
    reference = None
    for name, run in candidates.items():
        refreshes, output = _computed_calls(bench, run)
        reference = output if reference is None else reference
        share = _computed_share(bench, bench.configs[name], call) if name in bench.configs else None
        rows.append(
            {
                "setting": name,
                "refreshes": refreshes,
                "computed_share": share,
                "psnr": psnr(output, reference),
                "relative_l1": relative_l1(output, reference),
            }
        )
    medians = interleaved_medians(candidates, rounds=ROUNDS, warmup=0, clock=time.process_time)
    for row in rows:
        row["speedup"] = medians["none"] / medians[row["setting"]]
    _print(title, rows)
    return rows


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    headers = ("setting", "speedup", "ceiling", "computed", "PSNR dB", "rel L1")
    print(f"{headers[0]:<34}" + "".join(f"{header:>10}" for header in headers[1:]))
    for row in rows:
        share = row["computed_share"]
        cells = (
            f"{row['speedup']:.2f}x",
            f"{1 / share:.2f}x" if share else "-",
            str(row["refreshes"]),
            f"{row['psnr']:.1f}",
            f"{row['relative_l1']:.4f}",
        )
        print(f"{row['setting']:<34}" + "".join(f"{cell:>10}" for cell in cells))


# --- the families ---------------------------------------------------------------------------


def _video_dit(name: str) -> Bench:
    """A video transformer pipeline at benchmark size: 4 latent frames, 256 video tokens."""
    clip = {"height": 128, "width": 128, "num_frames": 13}
    if name == "cogvideox":
        pipe, kwargs = av_models.cogvideox_pipeline(
            av_models.tiny_cogvideox(**WIDE, num_layers=4, sample_width=16, sample_height=16, sample_frames=13)
        )
    elif name == "wan":
        pipe, kwargs = av_models.wan_pipeline(transformer=av_models.tiny_wan(**WIDE, num_layers=4, ffn_dim=512))
    elif name == "ltx":
        pipe, kwargs = av_models.ltx_pipeline(av_models.tiny_ltx(**WIDE, num_layers=4, cross_attention_dim=128))
        clip = {"height": 256, "width": 256, "num_frames": 25}
    elif name == "hunyuan-video":
        transformer = av_models.tiny_hunyuan_video(**WIDE, num_layers=2, num_single_layers=2, rope_axes_dim=(8, 12, 12))
        pipe, kwargs = av_models.hunyuan_video_pipeline(transformer)
    else:
        pipe, kwargs = av_models.mochi_pipeline(av_models.tiny_mochi(**WIDE, num_layers=4))
        clip["num_frames"] = 19
    smooth_time(pipe.transformer)
    pipe.set_progress_bar_config(disable=True)
    block_list = "blocks" if name == "wan" else "transformer_blocks"
    return Bench(pipe, {**kwargs, **clip}, marker=f"{block_list}.1")


@pytest.mark.filterwarnings("ignore:In CPU autocast:UserWarning")
@pytest.mark.parametrize("name", ["cogvideox", "wan", "ltx", "hunyuan-video", "mochi"])
def test_video_transformer_speed(benchmark: Any, name: str) -> None:
    torch.set_num_threads(1)
    bench = _video_dit(name)
    kinds = ["spatial_attn"] if name in ("cogvideox", "hunyuan-video", "mochi") else list(VIDEO_DIT_PYRAMID)
    bench.cachekit("blocks[1:4] uniform 2", {"policy": _uniform(2), "regions": ["blocks[1:4]"]})
    bench.cachekit("attention pyramid", _pyramid(kinds, VIDEO_DIT_PYRAMID))
    bench.diffusers("PAB, same pyramid", _pab(bench, spatial=2, cross=4))
    bench.cachekit("similarity 0.2 blocks[1:4]", {"policy": SIMILARITY, "regions": ["blocks[1:4]"]})
    bench.diffusers("first block cache 0.2", _first_block_cache(0.2))
    title = f"{name}: width 128, 4 blocks, 256 video tokens, {STEPS} steps, CFG"
    _report(benchmark, title, bench, "cachekit attention pyramid")


def _pyramid(kinds: list[str], intervals: dict[str, int] = PYRAMID) -> dict[str, Any]:
    """cachekit's attention kinds, each at its interval."""
    return {"regions": kinds, "region_policies": {kind: _uniform(intervals[kind]) for kind in kinds}}


def _report(benchmark: Any, title: str, bench: Bench, timed: str) -> None:
    rows = _table(title, bench)
    benchmark.extra_info.update({row["setting"]: row for row in rows})
    benchmark.pedantic(bench.settings[timed], rounds=1, iterations=1)


def test_video_unet_speed(benchmark: Any) -> None:
    """Text-to-video UNet3D: DeepCache's branch 0 against the attention pyramid."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()
    pipe = TextToVideoSDPipeline(
        vae=unet_models.tiny_vae(),
        text_encoder=None,
        tokenizer=None,
        unet=smooth_time(unet),
        scheduler=unet_models.scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    kwargs = {**unet_models.prompt_embeds(32), "num_frames": 8, "height": 16, "width": 16, "output_type": "latent"}
    bench = Bench(pipe, kwargs, marker="mid_block")
    bench.cachekit("branch0 uniform 3", {"policy": _uniform(3), "regions": ["branch0"]})
    bench.cachekit("attention pyramid", _pyramid(list(PYRAMID)))
    title = f"text-to-video UNet3D: widths 32/64, 8 frames of 16x16, DDIM {STEPS} steps, CFG"
    _report(benchmark, title, bench, "cachekit attention pyramid")


def test_stable_audio_speed(benchmark: Any) -> None:
    torch.set_num_threads(1)
    transformer = av_models.tiny_stable_audio(**WIDE, num_layers=4, sample_size=64)
    pipe, kwargs = av_models.stable_audio_pipeline(transformer)
    pipe.set_progress_bar_config(disable=True)
    bench = Bench(pipe, {**kwargs, "audio_end_in_s": 8.0}, "transformer_blocks.1", lambda result: result.audios)
    bench.cachekit("blocks[1:4] uniform 2", {"policy": _uniform(2), "regions": ["blocks[1:4]"]})
    bench.cachekit("attention pyramid", _pyramid(["spatial_attn", "cross_attn"]))
    bench.cachekit("similarity 0.2 blocks[1:4]", {"policy": SIMILARITY, "regions": ["blocks[1:4]"]})
    title = f"Stable Audio DiT: width 128, 4 blocks, 64 latent steps, EDM DPM-Solver {STEPS} steps, CFG"
    _report(benchmark, title, bench, "cachekit attention pyramid")


def test_audioldm2_speed(benchmark: Any) -> None:
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=32,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=([None, 8, 12], [None, 8, 12]),
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()
    pipe, kwargs = av_models.audioldm2_pipeline(smooth_time(unet))
    pipe.set_progress_bar_config(disable=True)
    bench = Bench(
        pipe, {**kwargs, "audio_length_in_s": 4.0}, "mid_block", lambda result: torch.as_tensor(result.audios)
    )
    bench.cachekit("branch0 uniform 3", {"policy": _uniform(3), "regions": ["branch0"]})
    bench.cachekit("attention pyramid", _pyramid(["spatial_attn", "cross_attn"]))
    title = f"AudioLDM 2 UNet: widths 32/64, 32 mel frames of 8 bins, DDIM {STEPS} steps, CFG"
    _report(benchmark, title, bench, "cachekit attention pyramid")
