"""FD and PSNR of calibrated schedules against uniform interval 10, lean (no timing rounds).

    python scripts/calibration_figures.py examples/digits_unet_calibrated.yaml [--samples N]

Reads an experiment config with a ``calibration`` section (examples/digits_*_calibrated.yaml),
calibrates its ``calibration.setting`` regions for ``none`` and ``linear`` in one recording
pass on the tuning seeds, then samples the held-out sampling seeds uncached, with uniform
interval 10 and with each calibrated schedule, and prints FD (the model's scorer) and mean
PSNR against the uncached samples. ``cachekit run`` on the same config measures the same
settings with speedups too, at the cost of the timing rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import cachekit
from cachekit.calibration.calibrate import calibrate_model
from cachekit.experiments.calibration import default_output
from cachekit.experiments.caller import SampleRequest
from cachekit.experiments.config import load_experiment
from cachekit.experiments.hooks import experiment_plugins, load_model
from cachekit.experiments.metrics import fidelity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--samples", type=int, help="held-out samples (default: the config's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_experiment(args.config)
    tuning, sampling = config.tuning(), config.sampling
    pipeline = load_model(config.model)
    hooks = experiment_plugins().hook
    caller, scorer = (
        hooks.cachekit_experiment_caller(spec=config.model),
        hooks.cachekit_sample_scorer(spec=config.model),
    )
    setting = tuning.spec.setting
    base = tuning.spec.cache_config().model_dump(exclude_unset=True, exclude={"policy", "forecast"})
    requests = tuning.requests()
    started = time.process_time()
    files = calibrate_model(
        pipeline,
        lambda: [caller(pipeline, request) for request in requests],
        tuning.spec.budget,
        base,
        forecasts=["none", "linear"],
        sample_size=tuning.spec.sample_size,
        samples={"seeds": tuning.spec.seed_list()},
    )
    print(
        f"calibrated on tuning seeds {tuning.spec.seed_list()[0]}..{tuning.spec.seed_list()[-1]} "
        f"in {time.process_time() - started:.0f} s CPU; region setting {setting}"
    )
    paths = {
        name: file.save(default_output(Path("runs") / f"{config.name}-figures", name)) for name, file in files.items()
    }
    seeds = sampling.seed_list()[: args.samples]
    labels = sampling.class_labels

    def sample(cache: dict | None) -> torch.Tensor:
        images = []
        handle = cachekit.enable(pipeline, cache) if cache else None
        try:
            for start in range(0, len(seeds), sampling.batch_size):
                index = range(start, min(start + sampling.batch_size, len(seeds)))
                request = SampleRequest(
                    steps=sampling.steps,
                    seeds=[seeds[i] for i in index],
                    class_labels=None if labels is None else [labels[i % len(labels)] for i in index],
                    options=sampling.call,
                )
                images.append(caller(pipeline, request))
        finally:
            if handle is not None:
                handle.disable()
        return torch.cat(images)

    label_tensor = None if labels is None else torch.tensor([labels[i % len(labels)] for i in range(len(seeds))])
    baseline = sample(None)
    print(
        f"held-out seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}): uncached FD {scorer(baseline, label_tensor)['fd']:.3f}"
    )
    for forecast in ("none", "linear"):
        for name, policy in (
            ("uniform interval=10", {"kind": "uniform", "interval": 10}),
            ("calibrated", {"kind": "calibrated", "file": str(paths[forecast])}),
        ):
            images = sample({**base, "policy": policy, "forecast": forecast})
            fd, psnr = scorer(images, label_tensor)["fd"], fidelity(images, baseline)["psnr"]
            steps = files[forecast].regions[next(iter(files[forecast].regions))].schedule.steps
            shown = list(steps) if name == "calibrated" else [0, 10, 20, 30, 40]
            print(f"forecast {forecast:6} {name:20} steps {shown}: FD {fd:.3f}  PSNR {psnr:.2f} dB")


if __name__ == "__main__":
    main()
