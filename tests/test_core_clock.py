"""The denoising clock: step counting from schedulers, contexts and generation resets."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    PNDMScheduler,
)

import cachekit
from cachekit import Denoiser, StepInfo
from cachekit.clock import DenoisingClock
from tests.models import MIDDLE, tiny_transformer

RECORD = {**MIDDLE, "policy": {"kind": "recording"}}


class Pipeline:
    """The smallest stand-in for a diffusers pipeline: a denoiser and a scheduler."""

    def __init__(self, scheduler):
        self.model = tiny_transformer()
        self.scheduler = scheduler

    @torch.no_grad()
    def __call__(self, steps: int, seed: int = 0, start: int = 0, cfg_calls: int = 1) -> torch.Tensor:
        self.scheduler.set_timesteps(steps)
        timesteps = self.scheduler.timesteps[start:]
        sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(seed))
        for t in timesteps:
            outputs = [self.model(self.scheduler.scale_model_input(sample, t), t) for _ in range(cfg_calls)]
            sample = self.scheduler.step(sum(outputs) / cfg_calls, t, sample).prev_sample
        return sample


def enable(pipe: Pipeline, config=RECORD):
    # The Pipeline stand-in is not a diffusers pipeline: name its denoiser through a plugin.
    class Finder:
        @cachekit.hookimpl
        def cachekit_find_denoisers(self, pipeline):
            return [Denoiser("model", pipeline.model, pipeline.scheduler)] if pipeline is pipe else None

    from cachekit.plugin_manager import register_plugin, unregister_plugin

    name = register_plugin(Finder(), name=f"finder-{id(pipe)}")
    try:
        return cachekit.enable(pipe, config)
    finally:
        unregister_plugin(name)


def steps_and_calls(seen: list[StepInfo]) -> list[tuple[int, int]]:
    return [(info.index, info.call) for info in seen]


def test_first_order_scheduler_counts_one_call_per_step(recorded):
    pipe = Pipeline(DDIMScheduler())
    with enable(pipe):
        pipe(10)
    assert steps_and_calls(recorded) == [(i, 0) for i in range(10)]
    assert {info.num_steps for info in recorded} == {10}
    assert [info.progress for info in recorded][::9] == [0.0, 1.0]


def test_pndm_repeated_timestep_is_the_second_call_of_step_zero(recorded):
    pipe = Pipeline(PNDMScheduler(skip_prk_steps=True))
    with enable(pipe):
        pipe(50)
    assert len(recorded) == 51
    assert steps_and_calls(recorded)[:4] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert recorded[-1].index == 49 and {info.num_steps for info in recorded} == {50}


@pytest.mark.parametrize("scheduler", [HeunDiscreteScheduler, KDPM2DiscreteScheduler])
def test_second_order_schedulers_count_two_calls_per_step(recorded, scheduler):
    pipe = Pipeline(scheduler())
    with enable(pipe):
        pipe(5)
    assert steps_and_calls(recorded) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1), (4, 0)]


def test_partial_schedule_counts_from_its_first_step(recorded):
    pipe = Pipeline(DDIMScheduler())
    with enable(pipe):
        pipe(50, start=20)
    assert [info.index for info in recorded] == list(range(30))
    assert {info.num_steps for info in recorded} == {30}


def test_cfg_as_separate_calls_gives_each_context_its_own_state(recorded):
    pipe = Pipeline(EulerDiscreteScheduler())
    config = {**MIDDLE, "policy": {"kind": "uniform", "interval": 2}}
    with enable(pipe, config) as handle:
        pipe(6, cfg_calls=2)
    hits = handle.stats["middle"].hits
    assert set(hits) == {0, 1}
    assert hits[0] == hits[1] == {0: "R", 1: ".", 2: "R", 3: ".", 4: "R", 5: "."}


def test_new_pipeline_call_starts_a_new_generation(recorded):
    pipe = Pipeline(DDIMScheduler())
    with enable(pipe):
        pipe(4, seed=1)
        pipe(4, seed=2)
    assert [(info.generation, info.index) for info in recorded] == [(g, i) for g in (0, 1) for i in range(4)]


def test_bare_model_counts_calls_and_same_timestep_is_another_context():
    clock = DenoisingClock(num_steps=3)
    x = torch.zeros(1, 8, 4)
    infos = [clock.tick((x, torch.tensor(t)), {}) for t in (900, 900, 500, 500, 100, 100)]
    assert [(i.index, i.context) for i in infos] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert {i.num_steps for i in infos} == {3}


@pytest.mark.parametrize(
    "second_input",
    [
        (torch.zeros(1, 8, 4), torch.tensor(999)),  # timestep went back up
        (torch.zeros(2, 8, 4), torch.tensor(100)),  # batch size changed
        (torch.zeros(1, 8, 4, dtype=torch.float64), torch.tensor(100)),  # dtype changed
    ],
)
def test_bare_model_new_generation_on_clock_going_back_or_input_change(second_input):
    resets = []
    clock = DenoisingClock(on_new_generation=lambda: resets.append(1))
    clock.tick((torch.zeros(1, 8, 4), torch.tensor(900)), {})
    clock.tick((torch.zeros(1, 8, 4), torch.tensor(500)), {})
    info = clock.tick(second_input, {})
    assert (info.generation, info.index) == (1, 0)
    assert len(resets) == 2


def test_no_stale_cache_across_generations():
    """A second generation's first call refreshes even when the policy would reuse."""
    model = tiny_transformer()
    config = {**MIDDLE, "policy": {"kind": "uniform", "interval": 100}}

    def run(seed: int) -> torch.Tensor:
        sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for t in (900, 600, 300):
                sample = sample - 0.1 * model(sample, torch.tensor(t))
        return sample

    with cachekit.cached(model, config):
        reference = run(2)
    with cachekit.cached(model, config) as handle:
        run(1)
        assert torch.equal(run(2), reference)
    assert handle.stats["middle"].refreshes == 2
