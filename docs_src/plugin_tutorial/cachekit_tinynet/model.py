"""TinyNet: a convolutional denoiser small enough to test on a CPU in milliseconds."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """``x + conv(silu(norm(x) + time(emb)))``: a residual block conditioned on the time."""

    def __init__(self, channels: int, time_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, channels)
        self.time = nn.Linear(time_dim, channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.silu(self.norm(x) + self.time(emb)[:, :, None, None]))


class TinyNet(nn.Module):
    """``conv_in``, then ``depth`` residual blocks, then ``conv_out``; ``forward(sample, timestep)``."""

    def __init__(self, in_channels: int = 3, channels: int = 16, depth: int = 4, time_dim: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.time_embed = nn.Sequential(nn.Linear(1, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(channels, time_dim) for _ in range(depth))
        self.conv_out = nn.Conv2d(channels, in_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device)
        emb = self.time_embed(t.reshape(-1, 1).expand(sample.shape[0], 1) / 1000)
        x = self.conv_in(sample)
        for block in self.blocks:
            x = block(x, emb)
        return self.conv_out(x)


def tinynet(seed: int = 0, **sizes: int) -> TinyNet:
    """A TinyNet with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return TinyNet(**sizes).eval()
