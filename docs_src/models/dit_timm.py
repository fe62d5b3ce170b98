"""A DiT of your own, laid out as in the DiT paper's code: no config beyond the policy."""

from typing import Any

import torch

import cachekit


@torch.no_grad()
def sample(model: Any, x: torch.Tensor, y: torch.Tensor, num_steps: int = 28) -> torch.Tensor:
    """A plain loop over timesteps 999 to 0 (put your sampler's update where the comment is)."""
    with cachekit.cached(model, {"policy": {"kind": "uniform", "interval": 3}}) as handle:
        for t in torch.linspace(999, 0, num_steps).long():
            eps = model(x, t.expand(len(x)), y)[:, : x.shape[1]]
            x = x - eps / num_steps  # your sampler's update
    print(handle.stats.hit_map())
    return x
