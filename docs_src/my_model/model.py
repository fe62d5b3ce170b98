"""A denoiser no plugin knows, and a plain sampling loop for it."""

from __future__ import annotations

import torch
from torch import nn


class MyDiT(nn.Module):
    """A transformer denoiser of your own: tokens in, tokens out, conditioned on the timestep."""

    def __init__(self, channels: int = 4, width: int = 32, depth: int = 8):
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.time = nn.Linear(1, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
            for _ in range(depth)
        )
        self.head = nn.Linear(width, channels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(sample) + self.time(timestep.reshape(1, 1, 1) / 1000)
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(hidden)


@torch.no_grad()
def denoise(model: nn.Module, noise: torch.Tensor, num_steps: int = 20) -> torch.Tensor:
    """A plain sampling loop: the timestep goes down, the sample is updated at every step."""
    sample = noise
    for timestep in torch.linspace(999, 0, num_steps):
        sample = sample - 0.05 * model(sample, timestep)
    return sample
