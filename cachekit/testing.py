"""``AdapterConformance``: the checks every adapter plugin must pass.

Subclass it in a test module, name the subclass ``Test...`` and implement
:meth:`~AdapterConformance.make_model` and :meth:`~AdapterConformance.make_inputs`;
pytest then runs every check on your model::

    class TestMyDiT(AdapterConformance):
        def make_model(self):
            torch.manual_seed(0)
            return MyDiT(depth=4, width=32).eval()

        def make_inputs(self, model, batch_size, seed):
            g = torch.Generator().manual_seed(seed)
            return {"x": torch.randn(batch_size, 4, 8, 8, generator=g), "t": None}

The suite drives the model through a short denoising loop of its own (no scheduler): the
sample (:attr:`sample_key`) is updated from the output at every step and the timestep
(:attr:`timestep_key`) goes down, so every call is a new step of one generation.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit.engine.handle import CacheHandle
from cachekit.errors import AlreadyEnabledError, RegionNotFoundError
from cachekit.modules import get_submodule


def model_output(result: Any) -> torch.Tensor:
    """The main tensor of a denoiser's return value (tensor, tuple, or output dataclass)."""
    if isinstance(result, torch.Tensor):
        return result
    if hasattr(result, "sample"):
        return result.sample
    return result[0]


class AdapterConformance:
    """Conformance checks for an adapter plugin, run on a tiny CPU instance of its model."""

    sample_key: str = "sample"
    """Keyword of the noisy sample in :meth:`make_inputs`' mapping."""
    timestep_key: str = "timestep"
    """Keyword of the timestep; the suite fills it in."""
    num_steps: int = 6
    """Steps of the suite's denoising loop."""
    interval: int = 2
    """Interval of the ``uniform`` policy used where reuse must happen."""
    batch_atol: float = 1e-5
    """Tolerance of "a batch of N equals N runs of batch 1" (batched kernels round differently)."""
    config: dict[str, Any] = {}
    """Extra config keys (``regions``, ``declare``) for every check."""

    def make_model(self) -> nn.Module:
        """A tiny, seeded, eval-mode instance of the adapter's model."""
        raise NotImplementedError

    def make_inputs(self, model: nn.Module, batch_size: int, seed: int) -> dict[str, Any]:
        """Keyword arguments of one forward call, the sample under :attr:`sample_key`."""
        raise NotImplementedError

    # --- driving -------------------------------------------------------------------------

    def timestep(self, index: int) -> torch.Tensor:
        """The timestep of step ``index``: 999 down to 0 over :attr:`num_steps` steps."""
        return torch.tensor(round(999 * (1 - index / max(self.num_steps - 1, 1))))

    @torch.no_grad()
    def generate(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Run the suite's denoising loop and return the final sample."""
        sample = inputs[self.sample_key]
        for index in range(self.num_steps):
            kwargs = {**inputs, self.sample_key: sample, self.timestep_key: self.timestep(index)}
            out = model_output(model(**kwargs))
            sample = sample - 0.1 * out[:, : sample.shape[1]]
        return sample

    def enable(self, model: nn.Module, interval: int) -> CacheHandle:
        """Enable the ``uniform`` policy with ``interval`` plus :attr:`config` on ``model``."""
        return cachekit.enable(model, {**self.config, "policy": {"kind": "uniform", "interval": interval}})

    def select(self, inputs: dict[str, Any], index: int, batch_size: int) -> dict[str, Any]:
        """The inputs of sample ``index`` alone: each tensor's rows ``index`` of ``batch_size``
        equal blocks (one row per sample, or one block of rows per sample), mappings recursed."""

        def pick(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: pick(item) for key, item in value.items()}
            if isinstance(value, torch.Tensor) and value.dim():
                rows = value.shape[0] // batch_size
                return value[index * rows : (index + 1) * rows]
            return value

        return pick(inputs)

    # --- the checks ----------------------------------------------------------------------

    def test_always_refresh_is_bit_identical(self) -> None:
        """1. A policy that always refreshes gives exactly the uncached output."""
        model = self.make_model()
        inputs = self.make_inputs(model, 1, seed=0)
        reference = self.generate(model, inputs)
        with self.enable(model, interval=1) as handle:
            cached_output = self.generate(model, inputs)
        assert handle.stats.reuses == 0
        assert torch.equal(cached_output, reference)

    def test_disable_restores_model(self) -> None:
        """2. ``disable()`` leaves no patched forward, the same module order, the same output."""
        model = self.make_model()
        inputs = self.make_inputs(model, 1, seed=0)
        reference = self.generate(model, inputs)
        before = {name: (list(m._modules), dict(vars(m))) for name, m in model.named_modules()}
        handle = self.enable(model, interval=self.interval)
        cached_output = self.generate(model, inputs)
        assert handle.stats.reuses > 0, "the policy never reused: the check below would prove nothing"
        assert not torch.equal(cached_output, reference)
        handle.disable()
        after = {name: (list(m._modules), dict(vars(m))) for name, m in model.named_modules()}
        assert after.keys() == before.keys()
        for name, (order, attributes) in before.items():
            assert after[name][0] == order, f"{name}: submodule order changed"
            assert after[name][1].keys() == attributes.keys(), f"{name}: attributes changed"
        assert torch.equal(self.generate(model, inputs), reference)

    def count_inner_calls(
        self, model: nn.Module, inputs: dict[str, Any], interval: int
    ) -> tuple[CacheHandle, dict[str, int]]:
        """Generate with caching at ``interval``; count the calls of every module inside each region."""
        handle = self.enable(model, interval=interval)
        calls = dict.fromkeys(handle.regions, 0)
        hooks = []
        for name, region in handle.regions.items():
            inner = [
                module
                for path in region.modules
                for child_name, module in get_submodule(model, path).named_modules()
                if child_name
            ]
            assert inner, f"region {name!r} has no submodules to count"

            def count(*_: Any, region_name: str = name) -> None:
                calls[region_name] += 1

            hooks += [module.register_forward_pre_hook(count) for module in inner]
        try:
            self.generate(model, inputs)
        finally:
            for hook in hooks:
                hook.remove()
            handle.disable()
        return handle, calls

    def test_reuse_steps_skip_region_modules(self) -> None:
        """3. On reuse steps no module inside a region runs (counted with forward pre-hooks).

        A refresh makes as many inner calls as an uncached step (a module may run several
        times per step, as a shared activation does); a reuse makes none.
        """
        model = self.make_model()
        inputs = self.make_inputs(model, 1, seed=0)
        uncached, uncached_calls = self.count_inner_calls(model, inputs, interval=1)
        handle, calls = self.count_inner_calls(model, inputs, interval=self.interval)
        for name, stats in handle.stats.regions.items():
            assert stats.reuses > 0, f"region {name!r} never reused"
            per_step = uncached_calls[name] / uncached.stats[name].refreshes
            assert calls[name] == stats.refreshes * per_step, (
                f"region {name!r}: {calls[name]} inner module calls for {stats.refreshes} refreshes "
                f"of {per_step} calls each"
            )

    def test_consecutive_generations_equal_fresh_runs(self) -> None:
        """4. Two generations with different inputs each equal a run on a freshly enabled model."""
        model = self.make_model()
        first, second = self.make_inputs(model, 1, seed=1), self.make_inputs(model, 1, seed=2)
        with self.enable(model, interval=self.interval):
            outputs = [self.generate(model, first), self.generate(model, second)]
        for inputs, output in zip((first, second), outputs, strict=True):
            with self.enable(model, interval=self.interval):
                assert torch.equal(self.generate(model, inputs), output)

    def test_batch_equals_single_runs(self) -> None:
        """5. A batch of N equals N runs of batch 1 under a per-generation policy."""
        model = self.make_model()
        batch = self.make_inputs(model, 3, seed=3)
        with self.enable(model, interval=self.interval):
            together = self.generate(model, batch)
            for index in range(3):
                alone = self.generate(model, self.select(batch, index, 3))
                torch.testing.assert_close(alone, together[index : index + 1], atol=self.batch_atol, rtol=0)

    def test_clear_errors(self) -> None:
        """6. Enabling twice is a clear error; a bad region name lists the available ones."""
        model = self.make_model()
        with self.enable(model, interval=self.interval) as handle:
            with pytest.raises(AlreadyEnabledError, match="already enabled"):
                self.enable(model, interval=self.interval)
            available = list(handle.regions)
        with pytest.raises(RegionNotFoundError, match="available") as error:
            cachekit.enable(model, {**self.config, "regions": ["no-such-region"]})
        assert all(name in str(error.value) for name in available)
        assert "forward" not in vars(model)
