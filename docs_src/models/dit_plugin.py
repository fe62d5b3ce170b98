"""A plugin for a transformer of your own, laid out in block lists: cachekit.trunk does the rest.

``mylib.MyDiT`` runs its ``blocks`` (an ``nn.ModuleList``) in turn, each ``block(x, c)``
returning the new tokens; its ``forward(sample, timestep)`` takes tokens of width
``embed.in_features``. The plugin recognises it by class name, so it never imports mylib.
"""

from typing import Any

import torch
from torch import nn

from cachekit import Region, hookimpl
from cachekit.trunk import SINGLE_STREAM, ExampleInputs, Family, noise, timesteps, trunk_region_named, trunk_regions

MY_DIT = Family(classes=("MyDiT",), lists=("blocks",), io=SINGLE_STREAM)
"""Where MyDiT's blocks are and how they take their tokens (one tensor in, one out)."""

EXAMPLES = ExampleInputs()


@EXAMPLES.builds("MyDiT")
def _my_dit(model: nn.Module, batch_size: int, generator: torch.Generator) -> dict[str, Any]:
    return {"sample": noise(generator, batch_size, 16, model.embed.in_features), "timestep": timesteps(batch_size)}


@hookimpl
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    trunk = MY_DIT.trunk(model)  # None: not a MyDiT, another plugin may know it
    return None if trunk is None else trunk_regions(model, trunk)  # blocks[1:L] first


@hookimpl
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    trunk = MY_DIT.trunk(model)
    return None if trunk is None else trunk_region_named(model, trunk, name)  # blocks[2:-1], blocks[0:6].mlp


@hookimpl
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    return EXAMPLES.inputs(model)  # for `cachekit inspect` and the conformance suite
