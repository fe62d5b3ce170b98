"""The hook engine: what reuse computes, what it skips, and that it undoes itself."""

from __future__ import annotations

import pytest
import torch

import cachekit
from cachekit import AlreadyEnabledError, Denoiser
from cachekit.plugin_manager import register_plugin, unregister_plugin
from tests.models import MIDDLE, tiny_transformer

T = (900, 700, 500, 300, 100)


@torch.no_grad()
def run(model, seed: int = 0, batch: int = 1) -> torch.Tensor:
    sample = torch.randn(batch, 8, 4, generator=torch.Generator().manual_seed(seed))
    for t in T:
        sample = sample - 0.1 * model(sample, torch.tensor(float(t)))
    return sample


@torch.no_grad()
def run_by_hand(model, reuse_at: set[int], mode: str) -> torch.Tensor:
    """The same loop with blocks 1-4 reused by hand: what caching must compute."""
    sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    stored = None
    for index, t in enumerate(T):
        c = model.time(torch.tensor([[t / 1000.0]]))[:, None, :]
        x = model.blocks[0](model.embed(sample), c)
        if index in reuse_at:
            x = x + stored if mode == "residual" else stored
        else:
            entry = x
            for block in model.blocks[1:5]:
                x = block(x, c)
            stored = x - entry if mode == "residual" else x
        x = model.blocks[5](x, c)
        sample = sample - 0.1 * model.out(x)
    return sample


@pytest.mark.parametrize("mode", ["residual", "output"])
def test_reuse_computes_exactly_the_hand_composed_reference(mode):
    model = tiny_transformer()
    config = {
        "declare": [{"name": "m", "entry": "blocks.1", "exit": "blocks.4", "mode": mode}],
        "policy": {"kind": "uniform", "interval": 2},
    }
    with cachekit.cached(model, config) as handle:
        cached_output = run(model)
    assert handle.stats.refresh_steps("m") == [0, 2, 4]
    torch.testing.assert_close(cached_output, run_by_hand(model, {1, 3}, mode), rtol=0, atol=1e-6)


def test_residual_region_with_replayed_inner_modules():
    model = tiny_transformer()
    config = {
        "declare": [{"name": "m", "entry": "blocks.1", "exit": "blocks.4", "mode": "residual", "inner": "replay"}],
        "policy": {"kind": "uniform", "interval": 2},
    }
    with cachekit.cached(model, config):
        cached_output = run(model)
    torch.testing.assert_close(cached_output, run_by_hand(model, {1, 3}, "residual"), rtol=0, atol=1e-6)


def test_hit_map_and_stats():
    model = tiny_transformer()
    with cachekit.cached(model, {**MIDDLE, "policy": {"kind": "uniform", "interval": 2}}) as handle:
        run(model)
    assert handle.stats.hit_map() == "middle                   R.R.R  3 refreshes, 2 reuses"
    assert handle.stats["middle"].computed_share == pytest.approx(0.6)
    assert (handle.stats.refreshes, handle.stats.reuses) == (3, 2)


def test_reset_drops_the_cache():
    model = tiny_transformer()
    with cachekit.cached(model, {**MIDDLE, "policy": {"kind": "uniform", "interval": 100}}) as handle:
        sample = torch.randn(1, 8, 4)
        with torch.no_grad():
            model(sample, torch.tensor(900.0))
            model(sample, torch.tensor(800.0))
            handle.reset()
            model(sample, torch.tensor(700.0))
    assert handle.stats["middle"].refreshes == 2


def test_region_policies_override_per_region():
    model = tiny_transformer()
    config = {
        "declare": [
            {"name": "a", "entry": "blocks.1", "exit": "blocks.2"},
            {"name": "b", "entry": "blocks.3", "exit": "blocks.4"},
        ],
        "policy": {"kind": "uniform", "interval": 1},
        "region_policies": {"b": {"kind": "uniform", "interval": 5}},
    }
    with cachekit.cached(model, config) as handle:
        run(model)
    assert handle.stats.refresh_steps("a") == [0, 1, 2, 3, 4]
    assert handle.stats.refresh_steps("b") == [0]


def test_similarity_reuses_while_calm_and_refreshes_on_drift():
    model = tiny_transformer()
    policy = {"kind": "similarity", "threshold": 0.05, "warmup_steps": 1}
    with cachekit.cached(model, {**MIDDLE, "policy": policy}) as handle:
        sample = torch.randn(1, 8, 4)
        with torch.no_grad():
            for t in (900, 899, 898, 897):
                model(sample, torch.tensor(float(t)))  # nearly identical entry inputs
            model(sample * 3, torch.tensor(896.0))  # a jump
    assert handle.stats["middle"].hits[0] == {0: "R", 1: ".", 2: ".", 3: ".", 4: "R"}


def test_enable_twice_is_a_clear_error_and_leaves_the_first_working():
    model = tiny_transformer()
    reference = run(model)
    with cachekit.cached(model, {**MIDDLE, "policy": {"kind": "uniform", "interval": 1}}):
        with pytest.raises(AlreadyEnabledError, match="already enabled on this TinyTransformer"):
            cachekit.enable(model, MIDDLE)
        assert torch.equal(run(model), reference)
    assert "forward" not in vars(model)


def test_disable_by_model_and_twice_is_harmless():
    model = tiny_transformer()
    handle = cachekit.enable(model, MIDDLE)
    cachekit.disable(model)
    handle.disable()
    cachekit.disable(model)
    assert not handle.enabled and not any("forward" in vars(m) for m in model.modules())
    cachekit.enable(model, MIDDLE).disable()


def test_failed_install_leaves_nothing_behind():
    model = tiny_transformer()
    config = {
        "declare": [{"name": "a", "entry": "blocks.1", "exit": "blocks.2"}, {"name": "b", "entry": "blocks.3"}],
        "region_policies": {"b": {"kind": "similarity", "probe": "entry_residual"}},
    }
    with pytest.raises(cachekit.ConfigError, match="probe_base"):
        cachekit.enable(model, config)
    assert not any("forward" in vars(m) for m in model.modules())
    cachekit.enable(model, MIDDLE).disable()


class TwoDenoiserPipeline:
    """Two experts sharing one scheduler (Wan 2.2 style)."""

    def __init__(self):
        from diffusers import DDIMScheduler

        self.transformer, self.transformer_2 = tiny_transformer(seed=0), tiny_transformer(seed=1)
        self.scheduler = DDIMScheduler()

    @torch.no_grad()
    def __call__(self, steps: int = 6, switch: int = 3) -> torch.Tensor:
        self.scheduler.set_timesteps(steps)
        sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
        for index, t in enumerate(self.scheduler.timesteps):
            model = self.transformer if index < switch else self.transformer_2
            sample = self.scheduler.step(model(sample, t), t, sample).prev_sample
        return sample


class TwoDenoiserFinder:
    @cachekit.hookimpl
    def cachekit_find_denoisers(self, pipeline):
        if isinstance(pipeline, TwoDenoiserPipeline):
            return [
                Denoiser(name, getattr(pipeline, name), pipeline.scheduler) for name in ("transformer", "transformer_2")
            ]
        return None


@pytest.fixture
def two_denoisers():
    name = register_plugin(TwoDenoiserFinder(), name="two-denoisers")
    try:
        yield TwoDenoiserPipeline()
    finally:
        unregister_plugin(name)


def test_two_denoisers_share_the_schedule_with_their_own_state_and_policies(two_denoisers):
    pipe = two_denoisers
    reference = pipe()
    config = {
        **MIDDLE,
        "policy": {"kind": "uniform", "interval": 2},
        "denoiser_policies": {"transformer_2": {"kind": "uniform", "interval": 1}},
    }
    scheduler_attributes = dict(vars(pipe.scheduler))
    with cachekit.cached(pipe, config) as handle:
        pipe()
        runtimes = {rt.denoiser.name: rt for rt in handle.runtimes}
        assert [r.policy.interval for r in runtimes["transformer_2"].runners] == [1]
    assert handle.stats.refresh_steps("transformer/middle") == [0, 2]
    assert handle.stats.refresh_steps("transformer_2/middle") == [3, 4, 5]
    assert vars(pipe.scheduler).keys() == scheduler_attributes.keys()
    assert torch.equal(pipe(), reference)


def test_pipeline_level_disable(two_denoisers):
    pipe = two_denoisers
    cachekit.enable(pipe, MIDDLE)
    cachekit.disable(pipe)
    assert "forward" not in vars(pipe.transformer) and "step" not in vars(pipe.scheduler)
