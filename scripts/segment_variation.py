"""How much a forecast segment's error varies between samples, and how well the probe's drift predicts it.

    python scripts/segment_variation.py examples/digits_unet_goal_5.yaml 0,3,10,22,37 [--samples 128]

Records uncached generations of the config's first policies entry's regions on tuning seeds
(30000 onwards), then, for the given refresh steps and linear forecasting, prints per
segment the mean error over samples (relative L1 of the region's result, summed over the
segment's reuse steps), its coefficient of variation across samples, the correlation
across samples between that error and the probe's drift summed over the segment, and the
slope of the error on the drift, both relative to their means (1: a sample drifting 10% more
errs 10% more), whose mean is a ``trust`` for the anchored ``adaptive`` policy. A small
variation means the error is a property of the steps more than of the sample: little for
a per-sample policy to adapt to.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from cachekit.calibration.recorder import Recorder
from cachekit.experiments.caller import SampleRequest
from cachekit.experiments.config import load_experiment
from cachekit.experiments.hooks import experiment_plugins, load_model


def relative_slope(drift: np.ndarray, error: np.ndarray) -> float:
    """The least-squares slope of ``error / mean(error)`` on ``drift / mean(drift)`` across samples."""
    relative_drift, relative_error = drift / drift.mean(), error / error.mean()
    return float(np.cov(relative_drift, relative_error)[0, 1] / relative_drift.var(ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("steps", help="refresh steps, comma-separated (step 0 first)")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=30000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_experiment(args.config)
    refreshes = sorted({0, *(int(step) for step in args.steps.split(","))})
    pipeline = load_model(config.model)
    caller = experiment_plugins().hook.cachekit_experiment_caller(spec=config.model)
    sampling = config.sampling
    labels = sampling.class_labels
    cache = config.settings[0].cache.model_dump(exclude_unset=True, exclude={"policy", "forecast"})
    recorded: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    recorder = Recorder(pipeline, cache, lambda name, trajectory: recorded.setdefault(name, []).append(trajectory))
    seeds = list(range(args.seed, args.seed + args.samples))
    with recorder.recording():
        for start in range(0, len(seeds), 64):
            batch = seeds[start : start + 64]
            caller(
                pipeline,
                SampleRequest(
                    steps=sampling.steps,
                    seeds=batch,
                    class_labels=None if labels is None else [labels[i % len(labels)] for i in range(len(batch))],
                    options=sampling.call,
                ),
            )
    for name, trajectories in recorded.items():
        slopes: list[float] = []
        results = torch.cat([results for results, _ in trajectories], 1).double()
        drifts = torch.cat([drifts for _, drifts in trajectories], 1).double().numpy()
        scale = results.abs().mean(dim=(0, 2))
        print(f"region {name}, {results.shape[1]} samples, refreshes {refreshes}, linear forecast")
        for index in range(1, len(refreshes)):
            previous, latest = refreshes[index - 1], refreshes[index]
            end = refreshes[index + 1] if index + 1 < len(refreshes) else sampling.steps
            served = range(latest + 1, end)
            if not served:
                continue
            slope = (results[latest] - results[previous]) / (latest - previous)
            error = sum(
                (results[latest] + (step - latest) * slope - results[step]).abs().mean(-1) / scale for step in served
            ).numpy()
            drift = np.nansum(drifts[latest + 1 : end], axis=0)
            slopes.append(relative_slope(drift, error))
            print(
                f"  segment {latest + 1}-{end - 1}: mean error {error.mean():.3f}, variation across samples "
                f"{error.std() / error.mean():.1%}, correlation with summed drift "
                f"{np.corrcoef(drift, error)[0, 1]:.2f}, relative slope {slopes[-1]:.2f}"
            )
        print(f"  mean relative slope (a trust for the anchored adaptive policy): {np.mean(slopes):.2f}")


if __name__ == "__main__":
    main()
