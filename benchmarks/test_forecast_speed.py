"""A forecast reuse step costs what a plain one costs: only what live code reads is forecast.

The shipped digits UNet (DeepCache's branch 0) at batch 500: the first four calls refresh
(every order has its full history), every later call reuses. Each forecaster runs on its own
copy of the model, side by side in interleaved rounds; each round times one reuse call of
each in CPU time (one thread), the order of the forecasters rotated from round to round.
Run: ``pytest benchmarks/test_forecast_speed.py --benchmark-enable -s``; the ratio of each
forecaster's median reuse step to plain reuse (``none``) and the spread over rounds are printed.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Literal

import torch
from cachekit_digits.loading import load_pipeline
from pydantic import Field

import cachekit
from cachekit.experiments import ModelSpec
from cachekit.policies.base import POLICIES

BATCH = 500
ROUNDS = 25
HISTORY = 4
FORECASTS = {
    "none": "none",
    "linear": "linear",
    "taylor2": {"name": "taylor", "order": 2},
    "taylor3": {"name": "taylor", "order": 3},
    "hermite2": {"name": "hermite", "order": 2},
}


class FirstStepsPolicy(cachekit.Policy):
    """Refresh the first ``count`` steps, reuse every later one."""

    kind: Literal["first-steps"] = "first-steps"
    count: int = Field(HISTORY, ge=1, description="Steps that refresh, from 0.")

    def should_refresh(self, step: cachekit.StepInfo, state: cachekit.PolicyState) -> bool:
        return step.index < self.count

    def refresh_steps(self, num_steps: int) -> list[int]:
        return list(range(min(self.count, num_steps)))


class Stepper:
    """One cached copy of the UNet, called at the next timestep each time."""

    def __init__(self, unet: torch.nn.Module, forecast: object, sample: torch.Tensor):
        self.unet = copy.deepcopy(unet)
        config = {"policy": {"kind": "first-steps"}, "regions": ["branch0"], "forecast": forecast}
        self.handle = cachekit.enable(self.unet, {**config, "num_steps": HISTORY + ROUNDS + 2})
        self.sample = sample
        self.timestep = 999

    @torch.no_grad()
    def step(self) -> None:
        self.unet(self.sample, torch.tensor(self.timestep))
        self.timestep -= 10


def timed(step: Callable[[], None]) -> float:
    start = time.process_time()
    step()
    return time.process_time() - start


def test_a_forecast_reuse_step_costs_what_a_plain_one_costs(benchmark) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with POLICIES.scoped():
            cachekit.register_policy(FirstStepsPolicy)
            times = reuse_times(benchmark)
    finally:
        torch.set_num_threads(threads)
    plain = statistics.median(times["none"])
    print(f"\nreuse step, digits UNet branch0, batch {BATCH}: none {plain * 1e3:.1f} ms CPU")
    for name in FORECASTS:
        ratios = [a / b for a, b in zip(times[name], times["none"], strict=True)]
        ratio = statistics.median(times[name]) / plain
        benchmark.extra_info[name] = {"ratio": ratio, "spread": (min(ratios), max(ratios))}
        print(f"  {name:>9}: {ratio:.3f} x none (rounds {min(ratios):.3f}-{max(ratios):.3f})")


def reuse_times(benchmark) -> dict[str, list[float]]:
    """CPU seconds of each forecaster's reuse calls, round by round."""
    unet = load_pipeline(ModelSpec(source="digits-unet")).unet
    sample = torch.randn(BATCH, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    steppers = {name: Stepper(unet, forecast, sample) for name, forecast in FORECASTS.items()}
    for stepper in steppers.values():
        for _ in range(HISTORY):
            stepper.step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    names = list(steppers)
    for index in range(ROUNDS):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            times[name].append(timed(steppers[name].step))
    benchmark.pedantic(steppers["linear"].step, rounds=1, iterations=1)
    for stepper in steppers.values():
        assert stepper.handle.stats.refreshes == HISTORY  # every timed call was a reuse step
        stepper.handle.disable()
    return times
