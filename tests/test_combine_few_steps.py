"""Few-step and distilled schedules: enabling warns that caching saves little, and the stats say so.

The project's pytest configuration ignores :class:`~cachekit.FewStepsWarning` (many tests run
short generations for speed); ``pytest.warns`` still records it, and the checks that nothing
is raised turn it into an error locally.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

import cachekit
from cachekit.engine.stats import FEW_STEPS, FewSteps
from tests.models import MIDDLE, tiny_transformer
from tests.unet_models import one_thread, prompt_embeds, sd_pipeline  # noqa: F401  (autouse fixture)


def denoise(model: torch.nn.Module, steps: int) -> torch.Tensor:
    """A bare loop of ``steps`` steps over the tiny transformer."""
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    for timestep in torch.linspace(999, 0, steps):
        sample = sample - 0.1 * model(sample, timestep)
    return sample


@contextmanager
def no_few_steps_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", cachekit.FewStepsWarning)
        yield


def bare(num_steps: int | None) -> dict[str, Any]:
    return {**MIDDLE, "policy": {"kind": "uniform", "interval": 2}, "num_steps": num_steps}


def test_a_four_step_pipeline_warns_with_the_ceiling_and_the_stats_say_so() -> None:
    pipe = sd_pipeline()
    warned = pytest.warns(cachekit.FewStepsWarning, match=r"^4 steps: at most 3 reuses per region; caching saves")
    with cachekit.cached(pipe, {"policy": {"kind": "uniform", "interval": 2}}) as handle, warned:
        pipe(**prompt_embeds(8), num_inference_steps=4, guidance_scale=1.0, output_type="latent")
    assert handle.stats.few_steps == FewSteps(4) and handle.stats.few_steps.max_reuses == 3
    assert handle.views["branch0"].stats.few_steps == FewSteps(4)
    assert handle.stats.hit_map().splitlines()[-1] == "4 steps: at most 3 reuses per region; caching saves little here"
    assert handle.stats.refresh_steps("branch0") == [0, 2]


def test_enough_steps_neither_warn_nor_mark_the_stats() -> None:
    model = tiny_transformer()
    with no_few_steps_warning(), cachekit.cached(model, bare(FEW_STEPS)) as handle:
        denoise(model, FEW_STEPS)
    assert handle.stats.few_steps is None
    assert "caching saves little" not in handle.stats.hit_map()


def test_an_unknown_step_count_does_not_warn() -> None:
    model = tiny_transformer()
    with no_few_steps_warning(), cachekit.cached(model, bare(None)) as handle:
        denoise(model, 3)
    assert handle.stats.few_steps is None


def test_warns_once_per_step_count_and_the_stats_follow_each_generation() -> None:
    model = tiny_transformer()
    with cachekit.cached(model, bare(3)) as handle:
        with pytest.warns(cachekit.FewStepsWarning, match="^3 steps: at most 2 reuses"):
            denoise(model, 3)
        with no_few_steps_warning():
            denoise(model, 3)  # the same count again: said once is enough
        assert handle.stats.few_steps == FewSteps(3)
        handle.reset()
        with no_few_steps_warning():
            denoise(model, 3)
    with cachekit.cached(model, bare(12)) as handle:
        denoise(model, 12)
    assert handle.stats.few_steps is None


def test_a_standard_filter_silences_it() -> None:
    model = tiny_transformer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=cachekit.FewStepsWarning)
        with cachekit.cached(model, bare(2)) as handle:
            denoise(model, 2)
    assert caught == [] and handle.stats.few_steps == FewSteps(2)


def test_it_is_a_cachekit_warning() -> None:
    assert issubclass(cachekit.FewStepsWarning, cachekit.CachekitWarning)
