"""On diffusers UNets the live readers of DeepCache's branches: each branch's exit alone."""

from __future__ import annotations

import pytest
import torch
from cachekit_unet.inputs import example_inputs

import cachekit
from tests.test_core_live_readers import forecast_everything
from tests.unet_models import one_thread, tiny_unet2d  # noqa: F401  (autouse fixture)


@pytest.mark.slow
@torch.no_grad()
def test_on_a_unet_only_each_branch_exit_reaches_live_code(monkeypatch):
    unet = tiny_unet2d()
    kwargs = example_inputs(unet)[1]
    start = kwargs.pop("sample")
    kwargs.pop("timestep")

    def run(branch: int) -> tuple[torch.Tensor, cachekit.CacheHandle]:
        config = {"policy": {"kind": "uniform", "interval": 3}, "regions": [f"branch{branch}"], "forecast": "linear"}
        sample = start
        with cachekit.cached(unet, {**config, "num_steps": 7}) as handle:
            for index in range(7):
                sample = sample - 0.1 * unet(sample, torch.tensor(999 - 100 * index), **kwargs).sample
        return sample, handle

    found = {}
    for branch in (0, 1):
        sample, handle = run(branch)
        (runner,) = handle.runtimes[0].runners
        found[branch] = (sample, runner.readers.paths, runner.region.exit, handle.stats[f"branch{branch}"].held_bytes())
    forecast_everything(monkeypatch)
    for branch, (sample, paths, exit, held) in found.items():
        assert paths == {exit}  # DeepCache's branches: the deep half's other outputs feed the deep half alone
        assert held["StoredResult"] > 0 and held["LinearForecast"] > 0
        assert torch.equal(sample, run(branch)[0])
