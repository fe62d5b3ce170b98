"""The cachekit plugin: which spans of a TinyNet can be cached, and how."""

from __future__ import annotations

from typing import Any

import torch
from cachekit import Region, hookimpl
from torch import nn

from cachekit_tinynet.model import TinyNet


@hookimpl
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    """The block stack of a TinyNet, whole or without its first and last block."""
    if not isinstance(model, TinyNet):
        return None  # not our model: let another plugin answer
    paths = [f"blocks.{index}" for index in range(len(model.blocks))]
    return [
        Region(  # the default region comes first
            name="inner-blocks",
            modules=tuple(paths[1:-1]),
            mode="residual",
            probe_base="blocks.0",
            description="every block but the first and the last",
        ),
        Region(name="all-blocks", modules=tuple(paths), mode="residual", description="the whole block stack"),
    ]


@hookimpl
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """One small forward call: one 8x8 sample at the first timestep."""
    if not isinstance(model, TinyNet):
        return None
    return (torch.randn(1, model.in_channels, 8, 8), torch.tensor(999)), {}
