"""Speed of the shipped digits models under cachekit, and the experiment runner's own cost.

Run: ``pytest benchmarks/test_experiments_speed.py --benchmark-enable -s``. Each table
times the uncached pipeline and each cache setting side by side (interleaved rounds, one
process, one thread, CPU time: steady on a machine others share), on the same seeds, and
states the fidelity each speedup comes at (PSNR against the uncached samples, FD and class
accuracy with the shipped classifier) with the refreshes per generation. ``--device cuda``
runs the pipelines on a GPU, timed by CUDA events (the runner's own cost: by wall time there).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from cachekit_digits.loading import load_pipeline
from cachekit_digits.quality import DigitsScorer

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_medians
from cachekit.experiments import ModelSpec, load_experiment, run_experiment
from cachekit.experiments.metrics import psnr
from cachekit.flops import computed_flop_share, region_flop_shares
from cachekit.plugin_manager import load_plugins
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 50
SAMPLES = 64

UNET_SETTINGS = {
    f"uniform {i} @branch0": {"policy": {"kind": "uniform", "interval": i}, "regions": ["branch0"]}
    for i in (2, 3, 5, 10)
}
DIT_SETTINGS = {
    f"uniform {i} @blocks[1:6]": {"policy": {"kind": "uniform", "interval": i}, "regions": ["blocks[1:6]"]}
    for i in (2, 3, 5)
}


def _generate(pipe: Any, call: dict[str, Any]) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(seed) for seed in range(SAMPLES)]
    return pipe(num_inference_steps=STEPS, generator=generators, output_type="pt", **call).images


def _spec_target() -> dict[str, str]:
    """The benchmarks' device and dtype as a model spec names them."""
    return {"device": str(current().device), "dtype": str(current().dtype).removeprefix("torch.")}


def _pipeline(source: str) -> Any:
    """The shipped pipeline on the benchmarks' device and dtype, its progress bar off."""
    pipe = load_pipeline(ModelSpec(source=source, **_spec_target()))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _side_by_side(source: str, call: dict[str, Any], settings: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    pipe = _pipeline(source)
    scorer, labels = DigitsScorer(), torch.as_tensor(call.get("class_labels", []))
    reference = _generate(pipe, call).cpu()  # the shipped scorer runs on the CPU
    rows = [{"setting": "none", "refreshes": STEPS, **scorer(reference, labels if len(labels) else None)}]
    candidates = {"none": lambda: _generate(pipe, call)}
    for name, config in settings.items():
        with cachekit.cached(pipe, config) as handle:
            images = _generate(pipe, call).cpu()
        fidelity = sum(psnr(a, b, data_range=1.0) for a, b in zip(images, reference, strict=True)) / SAMPLES
        rows.append(
            {
                "setting": name,
                "refreshes": len(handle.stats.refresh_steps(next(iter(handle.regions)))),
                "ceiling": 1 / _computed_flops(pipe, handle),
                "psnr": fidelity,
                **scorer(images, labels if len(labels) else None),
            }
        )

        def cached_run(config: dict[str, Any] = config) -> torch.Tensor:
            with cachekit.cached(pipe, config):
                return _generate(pipe, call)

        candidates[name] = cached_run
    medians = interleaved_medians(candidates, rounds=3, clock=time.process_time)
    for row in rows:
        row["seconds"] = medians[row["setting"]]
        row["speedup"] = medians["none"] / medians[row["setting"]]
    return rows


def _computed_flops(pipe: Any, handle: cachekit.CacheHandle) -> float:
    """Share of the denoiser's FLOPs still computed under ``handle``'s last generation."""
    denoiser = next(module for name, module in pipe.components.items() if name in ("unet", "transformer"))
    inputs = load_plugins().hook.cachekit_example_inputs(model=denoiser)
    shares = region_flop_shares(denoiser, handle.regions.values(), *current().inputs(inputs))
    return computed_flop_share(shares, {name: handle.stats[name].computed_share for name in handle.regions})


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'setting':<24} {'speedup':>8} {'ceiling':>8} {'refreshes':>9} {'PSNR dB':>8} {'FD':>8} {'acc':>6}")
    for row in rows:
        accuracy = f"{row['class_accuracy']:.3f}" if "class_accuracy" in row else "-"
        fidelity = f"{row['psnr']:.1f}" if "psnr" in row else "-"
        ceiling = f"{row['ceiling']:.2f}x" if "ceiling" in row else "-"
        head = f"{row['setting']:<24} {row['speedup']:>7.2f}x {ceiling:>8} {row['refreshes']:>9}"
        print(f"{head} {fidelity:>8} {row['fd']:>8.2f} {accuracy:>6}")


@pytest.mark.parametrize(
    ("source", "call", "settings"),
    [
        ("digits-unet", {"batch_size": SAMPLES}, UNET_SETTINGS),
        ("digits-dit", {"class_labels": [i % 10 for i in range(SAMPLES)], "guidance_scale": 1.5}, DIT_SETTINGS),
    ],
    ids=["digits-unet", "digits-dit"],
)
def test_shipped_model_speedups(benchmark, source, call, settings):
    rows = _side_by_side(source, call, settings)
    _print(f"{source}: DDIM {STEPS} steps, {SAMPLES} samples per call, CPU time of one thread", rows)
    benchmark.extra_info["rows"] = rows
    pipe = _pipeline(source)
    benchmark.pedantic(_generate, args=(pipe, call), rounds=1, iterations=1)
    assert all(row["speedup"] > 1 for row in rows[1:])


def test_runner_overhead(benchmark, tmp_path):
    """The runner's CPU time against the denoising loops it times (CPU time of one thread): loading,
    FLOP counting, metrics, files."""
    config = {
        "model": {"source": "digits-unet", **_spec_target()},
        "sampling": {"steps": STEPS, "num_samples": SAMPLES, "batch_size": SAMPLES},
        "policies": [{"grid": {"interval": [2, 5]}, "branch": 0}],
    }
    clock = time.perf_counter if current().is_cuda else time.process_time
    start = clock()
    results = benchmark.pedantic(run_experiment, args=(config, tmp_path), kwargs={"progress": False}, rounds=1)
    total = clock() - start
    repeats = load_experiment(config).timing.repeats  # each row's medians stand for its timed rounds
    loops = sum(
        repeats * (row["loop_seconds"] + row["baseline_seconds"] * (row["policy"] != "none")) for row in results.rows
    )
    benchmark.extra_info.update(total_s=total, loops_s=loops, overhead_s=total - loops)
    print(
        f"\nexperiment runner: {total:.1f}s of CPU time in all, about {loops:.1f}s in timed denoising loops "
        f"({100 * (total - loops) / total:.0f}% elsewhere: loading, warm-up, FLOP count, metrics, figures)"
    )
