"""Tiny models defined for the tests: a DiT-like block stack with no plugin behind it."""

from __future__ import annotations

import torch
from torch import nn


class TinyBlock(nn.Module):
    """A residual block conditioned on a time embedding: ``x + mlp(norm(x) + c)``."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x) + c)


class TinyTransformer(nn.Module):
    """``depth`` blocks over tokens, time-conditioned; ``forward(sample, timestep)``."""

    def __init__(self, depth: int = 6, width: int = 16, channels: int = 4):
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.time = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(TinyBlock(width) for _ in range(depth))
        self.out = nn.Linear(width, channels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(timestep, dtype=sample.dtype).reshape(-1, 1).expand(sample.shape[0], 1)
        c = self.time(t / 1000)[:, None, :]
        x = self.embed(sample)
        for block in self.blocks:
            x = block(x, c)
        return self.out(x)


def tiny_transformer(depth: int = 6, width: int = 16, seed: int = 0) -> TinyTransformer:
    """A seeded tiny transformer in eval mode."""
    torch.manual_seed(seed)
    return TinyTransformer(depth=depth, width=width).eval()


def tiny_inputs() -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, object]]:
    """``(args, kwargs)`` of one forward call of :func:`tiny_transformer`."""
    return (torch.randn(1, 8, 4), torch.tensor(500.0)), {}


MIDDLE = {"declare": [{"name": "middle", "entry": "blocks.1", "exit": "blocks.4"}]}
"""Config declaring blocks 1 to 4 of a 6-block :class:`TinyTransformer` as a residual region."""
