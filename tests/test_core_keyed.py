"""Keyed regions on a plain module: exact input keys, in-place changes, inference tensors,
shared snapshots, and how keyed regions may overlap others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
import torch
from torch import nn

import cachekit
from cachekit import ConfigError, Policy, PolicyState, Region, StepInfo, hookimpl, register_policy
from cachekit.engine.input_key import InputKeys

WIDTH = 8


class CrossBlock(nn.Module):
    """A residual block attending to a context through keys and values (a stand-in for diffusers' attn2)."""

    def __init__(self) -> None:
        super().__init__()
        self.to_q = nn.Linear(WIDTH, WIDTH)
        self.to_k = nn.Linear(WIDTH, WIDTH)
        self.to_v = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(self.to_q(x) @ self.to_k(context).transpose(1, 2), dim=-1)
        return x + attention @ self.to_v(context)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CrossBlock() for _ in range(3))

    def forward(self, sample: torch.Tensor, timestep: float, context: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            sample = block(sample + timestep / 1000, context)
        return sample


class KeyedPlugin:
    """Maps :class:`Net`: a block range, a keyed region over every key and value projection, and
    one over a whole block."""

    @hookimpl
    def cachekit_regions(self, model: nn.Module) -> list[Region] | None:
        if not isinstance(model, Net):
            return None
        paths = tuple(f"blocks.{index}.to_{name}" for index in range(3) for name in "kv")
        keyed = [Region("kv", paths, mode="keyed"), Region("kv_block", ("blocks.0",), mode="keyed")]
        return [Region("blocks", ("blocks.1", "blocks.2"), mode="residual"), *keyed]


@pytest.fixture
def net() -> Iterator[Net]:
    plugin = KeyedPlugin()
    cachekit.register_plugin(plugin, "keyed-test")
    torch.manual_seed(0)
    try:
        yield Net().eval()
    finally:
        cachekit.unregister_plugin("keyed-test")


def run(model: nn.Module, context: torch.Tensor, steps: int = 4) -> torch.Tensor:
    sample = torch.ones(2, 3, WIDTH)
    with torch.no_grad():
        for timestep in torch.linspace(1000, 0, steps).tolist():
            sample = model(sample, timestep, context)
    return sample


def counted(model: Net) -> list[int]:
    calls = [0]
    for block in model.blocks:
        original = block.to_k.forward

        def forward(x: torch.Tensor, original: Any = original) -> torch.Tensor:
            calls[0] += 1
            return original(x)

        block.to_k.forward = forward
    return calls


def test_a_new_tensor_with_equal_values_hits_and_a_changed_one_recomputes(net: Net) -> None:
    context = torch.randn(2, 5, WIDTH)
    calls = counted(net)
    with cachekit.cached(net, {"regions": ["kv"], "num_steps": 4}) as handle:
        run(net, context)
        assert calls[0] == 3
        run(net, context.clone())  # a new generation: recomputes once, whatever the values
        assert calls[0] == 6
        assert handle.stats["kv"].hits[0] == {0: "R", 1: ".", 2: ".", 3: "."}


def test_keys_compare_values_not_addresses() -> None:
    keys = InputKeys()
    tensor = torch.randn(3, 4)
    key = keys.key((tensor,), {})
    keys.forget()
    assert keys.matches(key, (tensor.clone(),), {})
    tensor.mul_(2)  # same address, other values
    assert not keys.matches(key, (tensor,), {})
    keys.forget()
    assert not keys.matches(key, (tensor.double(),), {}) and not keys.matches(key, (tensor[:2],), {})
    assert not keys.matches(key, (tensor,), {"scale": 2.0})


def test_within_a_call_an_unchanged_tensor_is_compared_once_and_copied_once() -> None:
    keys = InputKeys()
    tensor = torch.randn(3, 4)
    first, second = keys.key((tensor,), {}), keys.key((tensor,), {})
    assert first.tensors[0] is second.tensors[0]  # one snapshot for both
    view = tensor[:]  # another tensor object with the same values shares it too
    assert keys.key((view,), {}).tensors[0] is first.tensors[0]
    tensor.add_(1)  # changed in place within the call: not trusted by identity
    assert not keys.matches(first, (tensor,), {})


def test_a_served_output_changed_in_place_is_recomputed(net: Net) -> None:
    context = torch.randn(2, 5, WIDTH)
    net.blocks[0].to_k.register_forward_hook(lambda module, args, output: output.add_(1))  # a careless consumer
    uncached = run(net, context)
    calls = counted(net)
    with cachekit.cached(net, {"regions": ["kv"], "num_steps": 4}):
        cached = run(net, context)
    assert torch.equal(cached, uncached)
    assert calls[0] == 3 + 3  # the first block's key, changed after each call, runs at every step


def test_inference_tensors_are_served_as_copies(net: Net) -> None:
    context = torch.randn(2, 5, WIDTH)
    uncached = run(net, context)
    with torch.inference_mode(), cachekit.cached(net, {"regions": ["kv"], "num_steps": 4}) as handle:
        cached = run(net, context)
        assert handle.stats["kv"].reuses == 3
    assert torch.equal(cached, uncached)


def test_keyed_modules_may_sit_inside_another_region_never_around_one(net: Net) -> None:
    context = torch.randn(2, 5, WIDTH)
    with cachekit.cached(net, {"regions": ["blocks"], "num_steps": 4}):
        block = run(net, context)
    with cachekit.cached(net, {"regions": ["blocks", "kv"], "num_steps": 4}) as handle:
        assert torch.equal(run(net, context), block)
        assert handle.stats["kv"].reuses == 3  # blocks.0's projections run at every step
    declared = {"name": "k0", "entry": "blocks.0.to_k", "mode": "output"}
    with pytest.raises(ConfigError, match="regions 'kv' and 'k0' overlap: 'blocks.0.to_k' is 'blocks.0.to_k'"):
        cachekit.enable(net, {"regions": ["kv", "k0"], "declare": [declared]})
    with pytest.raises(ConfigError, match="regions 'kv_block' and 'k0' overlap: 'blocks.0.to_k' is inside 'blocks.0'"):
        cachekit.enable(net, {"regions": ["kv_block", "k0"], "declare": [declared]})


class SomeRowsPolicy(Policy):
    """Refreshes at steps 0 and 3, batch row 0 alone at step 2, nothing at step 1 (tests only)."""

    kind: Literal["some_rows"] = "some_rows"

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool | torch.Tensor:
        return torch.tensor([True, False]) if step.index == 2 else step.index != 1


def test_a_call_on_some_rows_keeps_the_whole_batchs_stored_call(net: Net, scoped_registries: None) -> None:
    register_policy(SomeRowsPolicy)
    context = torch.randn(2, 5, WIDTH)
    with cachekit.cached(net, {"regions": ["blocks"], "policy": "some_rows", "num_steps": 4}):
        block = run(net, context)
    calls = counted(net)
    with cachekit.cached(net, {"regions": ["blocks", "kv"], "policy": "some_rows", "num_steps": 4}):
        assert torch.equal(run(net, context), block)
    # step 0: all three keys; step 2: blocks 1 and 2 on row 0 alone; step 3: served, whole batch
    assert calls[0] == 3 + 2
