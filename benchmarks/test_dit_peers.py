"""cachekit against diffusers' caches and cache-dit on a Flux-shaped and a PixArt-shaped DiT.

Run: ``pytest benchmarks/test_dit_peers.py --benchmark-enable -s``. Each model runs 28 steps
from one seed; every setting's output is compared with the uncached latents (PSNR, relative
L1), its share of the uncached FLOPs is counted (``FlopCounterMode``, all matmuls and
attention), and all settings are timed side by side (interleaved rounds, medians, one
thread, CPU time: steadier than wall time on a shared machine). The table is printed and
kept in the benchmark's ``extra_info``; the speed against fidelity plot goes to
``docs/assets/dit_peers.png``, its data to ``docs/assets/dit_peers.json`` (with ``--tables
DIR``, to ``DIR`` instead), a model not run this time keeping its earlier rows there.

Models: random weights with smoothed time conditioning (:func:`tests.dit_models.smooth_time`),
so that adjacent steps differ as in a trained model rather than being decorrelated by the
fast frequencies of the timestep embedding. Peers missing from the environment are skipped
(cache-dit is optional: ``pip install cache-dit``).

* Flux-shaped: 4 dual-stream + 8 single-stream blocks, width 256, 256 image and 32 text
  tokens, embedded guidance (one call per step), flow-matching Euler.
* PixArt-shaped: 12 blocks, width 256, 256 image tokens, batched CFG, DPM-Solver++.

``--device cuda`` runs every setting on a GPU, timed by CUDA events; ``--tables DIR`` writes
each model's table as Markdown (``scripts/gpu_benchmarks.sh`` does both). Environment
variables: ``CACHEKIT_DIT_BENCH_ROUNDS`` (default 3) sets the timed rounds,
``CACHEKIT_DIT_BENCH_STEPS`` (default 28) the steps, ``CACHEKIT_DIT_BENCH_SIZE=tiny``
shrinks both models to 4 heads of 16 and 16 tokens (smoke tests; ``full`` without it), and
``CACHEKIT_DIT_BENCH_SETTINGS`` (a regular expression searched in "tool setting", e.g.
``"diffusers|uniform"``) keeps only the settings it matches beside the uncached baseline.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import io
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cachekit
from benchmarks import tables
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_medians
from cachekit.experiments.metrics import psnr, relative_l1
from cachekit.experiments.plots import pareto_front
from cachekit.plugin_manager import load_plugins
from cachekit.reuse import FORECASTERS
from tests.dit_models import diffusers_model, flux_pipeline, pixart_pipeline, run_pipeline, smooth_time

STEPS = int(os.environ.get("CACHEKIT_DIT_BENCH_STEPS", "28"))
ROUNDS = int(os.environ.get("CACHEKIT_DIT_BENCH_ROUNDS", "3"))
TINY = os.environ.get("CACHEKIT_DIT_BENCH_SIZE", "full") == "tiny"
HEAD_DIM, SIDE = (16, 4) if TINY else (64, 16)
"""Attention head width and token grid side of both models (4 heads; 256 image tokens at full size)."""
ASSETS = Path(__file__).resolve().parents[1] / "docs" / "assets"
SELECTED = re.compile(os.environ.get("CACHEKIT_DIT_BENCH_SETTINGS", ""))
"""Settings run: those whose "tool setting" this matches (all of them by default)."""

Generate = Callable[[Any], torch.Tensor]


@dataclass
class Setting:
    """One way of running the pipeline: its tool, its name and a call returning the latents."""

    tool: str
    name: str
    run: Callable[[], torch.Tensor]
    refreshes: Callable[[], int | None] = lambda: None


# --- models --------------------------------------------------------------------------------


def on_target(pipe: Any, call: dict[str, Any]) -> tuple[Any, Generate]:
    """The pipeline and a seeded generation of :data:`STEPS` steps, on the benchmarks' device and dtype."""
    pipe, call = current().model(pipe), current().inputs(call)
    return pipe, lambda p: run_pipeline(p, call, STEPS)


def flux_shaped(head_dim: int = HEAD_DIM, side: int = SIDE) -> tuple[Any, Generate]:
    """The Flux-shaped pipeline: 4 heads of ``head_dim``, a ``side`` x ``side`` token grid, 32 text tokens."""
    first = max(2, head_dim // 16 * 2)
    second = (head_dim - first) // 4 * 2
    rope = (first, second, head_dim - first - second)  # even parts: (8, 28, 28) at 64
    transformer = diffusers_model(
        "FluxTransformer2DModel", patch_size=1, in_channels=64, num_layers=4, num_single_layers=8,
        attention_head_dim=head_dim, num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64,
        guidance_embeds=True, axes_dims_rope=rope,
    )  # fmt: skip
    # the tiny VAE halves the image, Flux packs 2 x 2 latents into a token
    return on_target(*flux_pipeline(transformer=smooth_time(transformer), pixels=4 * side, tokens=32))


def pixart_shaped(head_dim: int = HEAD_DIM, side: int = SIDE) -> tuple[Any, Generate]:
    """The PixArt-shaped pipeline: 12 blocks of 4 heads of ``head_dim``, ``side`` x ``side`` tokens, 32 text tokens."""
    transformer = diffusers_model(
        "PixArtTransformer2DModel", num_attention_heads=4, attention_head_dim=head_dim, in_channels=4,
        out_channels=8, num_layers=12, cross_attention_dim=4 * head_dim, caption_channels=64,
        sample_size=2 * side, patch_size=2,
    )  # fmt: skip
    return on_target(*pixart_pipeline(transformer=smooth_time(transformer), pixels=4 * side, tokens=32))


# --- settings ------------------------------------------------------------------------------


def cachekit_setting(pipe: Any, generate: Generate, name: str, config: dict[str, Any]) -> Setting:
    refreshes: list[int] = []

    def run() -> torch.Tensor:
        with cachekit.cached(pipe, config) as handle:
            output = generate(pipe)
        refreshes[:] = [handle.stats.refreshes]
        return output

    return Setting("cachekit", name, run, lambda: refreshes[0] if refreshes else None)


FORECASTS: dict[str, Any] = {
    "linear": "linear",
    "taylor 2": {"name": "taylor", "order": 2},
    "hermite 2": {"name": "hermite", "order": 2},
}
"""The forecasters the forecasting settings run with, by the label the table gives them (those
registered: a forecaster this cachekit does not have is left out)."""


def registered_forecasts() -> dict[str, Any]:
    """:data:`FORECASTS` but the forecasters no plugin registered."""
    known = FORECASTERS.names()
    return {
        label: forecast
        for label, forecast in FORECASTS.items()
        if (forecast if isinstance(forecast, str) else forecast["name"]) in known
    }


def cachekit_settings(pipe: Any, generate: Generate) -> list[Setting]:
    """Never reusing (the hooks' overhead); uniform over the whole trunk, with and without 8
    warm-up steps (the peers' defaults warm up too: DBCache 8 steps, MagCache 20%); similarity
    on the first block's residual (First-Block-Cache's rule; with warm-up, DBCache's setting)
    and on the trunk's input (TeaCache's); self-attention every other step (PAB's); and uniform
    over the trunk with each forecaster of :data:`FORECASTS` (TaylorSeer's idea on cachekit's
    regions)."""
    length = len(pipe.transformer.transformer_blocks) + len(getattr(pipe.transformer, "single_transformer_blocks", ()))
    trunk = f"blocks[0:{length}]"
    uniform = [(interval, 0) for interval in (2, 3, 4, 6)] + [(interval, 8) for interval in (4, 8, 10)]
    first_block = [(threshold, 1) for threshold in (0.1, 0.2)] + [(threshold, 8) for threshold in (0.2, 0.3)]
    trunk_input = [(threshold, 1) for threshold in (0.02, 0.05, 0.1, 0.2, 0.5)] + [(0.8, 8)]
    attention = [
        region.name
        for region in load_plugins().hook.cachekit_regions(model=pipe.transformer)
        if region.name.endswith((".attn", ".attn1"))
    ]
    variants: list[tuple[str, dict[str, Any]]] = [("never reuse", {"policy": {"kind": "uniform", "interval": 1}})]
    variants += [
        (
            f"uniform {interval}{warmed(warmup)}",
            {"regions": [trunk], "policy": {"kind": "uniform", "interval": interval, "warmup_steps": warmup}},
        )
        for interval, warmup in uniform
    ]
    variants += [
        (
            f"first-block {threshold}{warmed(warmup)}",
            {
                "policy": {
                    "kind": "similarity",
                    "probe": "entry_residual",
                    "threshold": threshold,
                    "warmup_steps": warmup,
                }
            },
        )
        for threshold, warmup in first_block
    ]
    variants += [
        (
            f"input {threshold}{warmed(warmup)}",
            {"regions": [trunk], "policy": {"kind": "similarity", "threshold": threshold, "warmup_steps": warmup}},
        )
        for threshold, warmup in trunk_input
    ]
    variants += [
        (
            f"uniform {interval}, {label}",
            {"regions": [trunk], "policy": {"kind": "uniform", "interval": interval}, "forecast": forecast},
        )
        for label, forecast in registered_forecasts().items()
        for interval in (2, 3, 4, 6)
    ]
    variants.append(
        (
            "self-attention 2, warm-up 6",
            {"regions": attention, "policy": {"kind": "uniform", "interval": 2, "warmup_steps": 6}},
        )
    )
    return [cachekit_setting(pipe, generate, name, config) for name, config in variants]


def warmed(steps: int) -> str:
    """``", warm-up 8"`` for a setting whose first ``steps`` > 1 steps always refresh."""
    return f", warm-up {steps}" if steps > 1 else ""


def with_transformer(pipe: Any, transformer: Any) -> Any:
    """A pipeline sharing every component of ``pipe`` but its transformer."""
    return type(pipe)(**{**pipe.components, "transformer": transformer})


def diffusers_setting(pipe: Any, generate: Generate, name: str, apply: str, config: Any) -> Setting:
    """A diffusers cache applied with ``diffusers.hooks.<apply>`` to a copy of the transformer.

    diffusers' ``enable_cache`` exists only on transformers with its ``CacheMixin`` (not
    PixArt's), and its hooks need a cache context, which PixArt-α's pipeline never sets; the
    copy gets one around each generation and its hook state is reset after (as pipelines do
    for ``CacheMixin`` models).
    """
    from diffusers import hooks
    from diffusers.hooks.hooks import CacheContext, HookRegistry, _set_cache_context

    transformer = copy.deepcopy(pipe.transformer)
    getattr(hooks, apply)(transformer, config(transformer) if callable(config) else config)
    copied = with_transformer(pipe, transformer)

    def run() -> torch.Tensor:
        _set_cache_context(transformer, CacheContext("generation"))
        try:
            return generate(copied)
        finally:
            _set_cache_context(transformer, None)
            HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks()

    return Setting("diffusers", name, run)


def current_timestep(transformer: Any) -> Callable[[], float]:
    """The timestep (0 to 1000) of the transformer's latest call, for PAB's skip range."""
    scale = 1000.0 if type(transformer).__name__ == "FluxTransformer2DModel" else 1.0  # Flux gets t / 1000
    latest: dict[str, float] = {}

    def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        latest["t"] = scale * float(kwargs["timestep"].reshape(-1)[0])

    transformer.register_forward_pre_hook(record, with_kwargs=True)
    return lambda: latest["t"]


def magcache_ratios(pipe: Any, generate: Generate) -> list[float]:
    """MagCache's calibration run: the per-step magnitude ratios it prints for this model."""
    from diffusers import MagCacheConfig

    calibration = diffusers_setting(
        pipe, generate, "calibration", "apply_mag_cache", MagCacheConfig(calibrate=True, num_inference_steps=STEPS)
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        calibration.run()
    lines = printed.getvalue().splitlines()
    marker = next(index for index, line in enumerate(lines) if "Calibration Complete" in line)
    return ast.literal_eval(lines[marker + 1])


def diffusers_settings(pipe: Any, generate: Generate) -> list[Setting]:
    """FirstBlockCache, TaylorSeer (full and lite), PAB (self-attention every other step, its
    default timestep range) and MagCache calibrated on this model."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig

    ratios = magcache_ratios(pipe, generate)
    variants: list[tuple[str, str, Any]] = [
        (f"FirstBlockCache {threshold}", "apply_first_block_cache", FirstBlockCacheConfig(threshold=threshold))
        for threshold in (0.1, 0.2)
    ]
    variants += [
        ("TaylorSeer", "apply_taylorseer_cache", TaylorSeerCacheConfig()),
        ("TaylorSeer lite", "apply_taylorseer_cache", TaylorSeerCacheConfig(use_lite_mode=True)),
        (
            "PAB",
            "apply_pyramid_attention_broadcast",
            lambda transformer: PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2, current_timestep_callback=current_timestep(transformer)
            ),
        ),
    ]
    variants += [
        (
            f"MagCache K={skips}",
            "apply_mag_cache",
            MagCacheConfig(mag_ratios=ratios, num_inference_steps=STEPS, max_skip_steps=skips),
        )
        for skips in (3, 5)
    ]
    return [diffusers_setting(pipe, generate, name, apply, config) for name, apply, config in variants]


def cache_dit_settings(pipe: Any, generate: Generate) -> list[Setting]:
    """cache-dit's DBCache with Fn=1, Bn=0 on a copy of the pipeline (its disable leaves patches behind)."""
    import cache_dit

    settings = []
    for threshold in (0.12, 0.24):
        copied = copy.deepcopy(pipe)
        config = cache_dit.DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=threshold)
        with contextlib.redirect_stdout(io.StringIO()):
            cache_dit.enable_cache(copied, cache_config=config)
        settings.append(Setting("cache-dit", f"DBCache F1B0 {threshold}", lambda copied=copied: generate(copied)))
    return settings


# --- measuring -------------------------------------------------------------------------------


def measure(model: str, pipe: Any, generate: Generate, settings: list[Setting]) -> list[dict[str, Any]]:
    """Fidelity and FLOP share of each setting (one counted run), then speed (interleaved rounds)."""
    baseline = Setting("none", "no cache", lambda: generate(pipe))
    settings = [baseline, *settings]
    outputs, flops = {}, {}
    for setting in settings:
        with FlopCounterMode(display=False) as counter:
            outputs[setting.name] = setting.run()
        flops[setting.name] = counter.get_total_flops()
    medians = interleaved_medians(
        {setting.name: setting.run for setting in settings}, rounds=ROUNDS, warmup=0, clock=time.process_time
    )
    reference, base_time = outputs[baseline.name], medians[baseline.name]
    rows = [
        {
            "model": model,
            "tool": setting.tool,
            "setting": setting.name,
            "speedup": base_time / medians[setting.name],
            "flop_share": flops[setting.name] / flops[baseline.name],
            "refreshes": setting.refreshes(),
            "psnr": psnr(outputs[setting.name], reference),
            "relative_l1": relative_l1(outputs[setting.name], reference),
        }
        for setting in settings
    ]
    print_table(model, base_time, rows)
    print_verdicts(model, rows)
    return rows


def print_verdicts(model: str, rows: list[dict[str, Any]]) -> None:
    """For each peer setting, cachekit's fastest setting at least as faithful (PSNR), and
    whether it is faster: the table is printed and (``--tables``) written."""
    ours = [row for row in rows if row["tool"] == "cachekit"]
    cells = []
    for peer in (row for row in rows if row["tool"] not in ("cachekit", "none")):
        best = max((row for row in ours if row["psnr"] >= peer["psnr"]), key=lambda row: row["speedup"], default=None)
        mine = ["none", "-", "-", "-"] if best is None else [best["setting"], *figures(best)]
        ahead = best is not None and best["speedup"] > peer["speedup"]
        cells.append([f"{peer['tool']} {peer['setting']}", *figures(peer), *mine, "yes" if ahead else "no"])
    headers = ("peer setting", "speedup", "FLOPs", "PSNR dB", "cachekit's fastest at >= its PSNR", "speedup",
               "FLOPs", "PSNR dB", "cachekit faster")  # fmt: skip
    title = f"{model}: each peer setting against cachekit's fastest setting at equal or better PSNR"
    tables.emit(f"dit_peers_{table_key(model)}_verdicts", title, headers, cells, left=1)


def figures(row: dict[str, Any]) -> list[str]:
    """A row's speedup, FLOP share and PSNR, as table cells."""
    return [f"{row['speedup']:.2f}x", f"{100 * row['flop_share']:.1f}%", f"{row['psnr']:.1f}"]


def table_key(model: str) -> str:
    """``"flux"`` for ``"Flux-shaped (4 + 8 blocks)"``: the tables' file names."""
    return model.split("-")[0].lower()


def print_table(model: str, base_time: float, rows: list[dict[str, Any]]) -> None:
    """The table, printed and (``--tables``) written; ``of ceiling`` is the share of the FLOP
    ceiling (1 / FLOP share) that the speedup reaches."""
    clock = "CUDA events" if current().is_cuda else "CPU time, 1 thread"
    title = (
        f"{model}: {STEPS} steps on {current().describe()}, uncached {base_time:.3f} s "
        f"(median of {ROUNDS} interleaved rounds, {clock})"
    )
    headers = ("tool", "setting", "speedup", "FLOPs", "of ceiling", "refreshes", "PSNR dB", "rel L1")
    cells = [
        [
            row["tool"],
            row["setting"],
            f"{row['speedup']:.2f}x",
            f"{100 * row['flop_share']:.1f}%",
            f"{100 * row['speedup'] * row['flop_share']:.1f}%",
            "-" if row["refreshes"] is None else str(row["refreshes"]),
            f"{row['psnr']:.1f}",
            f"{row['relative_l1']:.4f}",
        ]
        for row in rows
    ]
    tables.emit(f"dit_peers_{table_key(model)}", title, headers, cells, left=2)


TOOL_COLOURS = {"cachekit": "tab:blue", "diffusers": "tab:orange", "cache-dit": "tab:green"}


def save_plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Speedup against PSNR, one panel per model; each tool's Pareto front drawn and labelled
    (identical outputs, PSNR infinite, are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    for axes, (model, rows) in zip(panels[0], results.items(), strict=True):
        for tool, colour in TOOL_COLOURS.items():
            points = [
                (row["speedup"], row["psnr"], row["setting"])
                for row in rows
                if row["tool"] == tool and math.isfinite(row["psnr"])
            ]
            if not points:
                continue
            axes.scatter([p[0] for p in points], [p[1] for p in points], color=colour, label=tool, zorder=3, s=18)
            front = [points[index] for index in pareto_front([(p[0], p[1]) for p in points], higher_is_better=True)]
            axes.plot([p[0] for p in front], [p[1] for p in front], color=colour, alpha=0.6)
            for x, y, name in front:
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=colour)
        axes.set_title(f"{model}, {STEPS} steps")
        axes.set_xlabel("speedup of the whole generation (x)")
        axes.set_ylabel("PSNR of the latents vs uncached (dB)")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_model(model: str, build: Callable[[], tuple[Any, Generate]], benchmark: Any) -> None:
    torch.set_num_threads(1)
    pipe, generate = build()
    settings = cachekit_settings(pipe, generate) + diffusers_settings(pipe, generate)
    if importlib.util.find_spec("cache_dit") is not None:
        settings += cache_dit_settings(pipe, generate)
    rows = measure(model, pipe, generate, [item for item in settings if SELECTED.search(f"{item.tool} {item.name}")])
    plot = (tables.folder() or ASSETS) / "dit_peers.png"
    data = plot.with_suffix(".json")
    results = json.loads(data.read_text(encoding="utf-8")) if data.exists() else {}
    results[model] = rows
    save_plot(results, plot)
    data.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    benchmark.extra_info.update({f"{row['tool']} {row['setting']}": row for row in rows})
    benchmark.pedantic(settings[0].run, rounds=1, iterations=1)


def test_flux_shaped(benchmark: Any) -> None:
    pytest.importorskip("diffusers")
    run_model("Flux-shaped (4 + 8 blocks)", flux_shaped, benchmark)


def test_pixart_shaped(benchmark: Any) -> None:
    pytest.importorskip("diffusers")
    run_model("PixArt-shaped (12 blocks, CFG)", pixart_shaped, benchmark)


def test_hook_overhead(benchmark: Any) -> None:
    """cachekit's hooks with a never-reusing policy, against the Flux-shaped model's uncached time.

    The hooks cost the same whatever the width, so their absolute cost is measured on the same
    block layout at a tiny width (many rounds, where it stands out of the noise) and divided by
    the uncached time of the benchmark's Flux-shaped model.
    """
    pytest.importorskip("diffusers")
    torch.set_num_threads(1)
    tiny, generate_tiny = flux_shaped(head_dim=16, side=4)
    never = {"policy": {"kind": "uniform", "interval": 1}}

    def hooked() -> torch.Tensor:
        with cachekit.cached(tiny, never):
            return generate_tiny(tiny)

    medians = interleaved_medians(
        {"none": lambda: generate_tiny(tiny), "never": hooked}, rounds=25, clock=time.process_time
    )
    overhead = medians["never"] - medians["none"]
    full, generate_full = flux_shaped()
    full_times = [current().seconds(lambda: generate_full(full), time.process_time) for _ in range(3)]
    share = overhead / statistics.median(full_times)
    print(
        f"\nhooks of a never-reusing policy: {1000 * overhead:.1f} ms per {STEPS}-step generation "
        f"(tiny width: {medians['none']:.3f} s uncached); {100 * share:.2f}% of the Flux-shaped model's "
        f"{statistics.median(full_times):.2f} s"
    )
    benchmark.extra_info.update({"overhead_seconds": overhead, "overhead_share": share})
    benchmark.pedantic(hooked, rounds=1, iterations=1)
