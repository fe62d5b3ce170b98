"""Read what a policy refreshed and reused: totals, share computed, refresh steps, hit map."""

from pathlib import Path

import torch
from model import MyDiT, denoise

import cachekit

torch.manual_seed(0)
model = MyDiT().eval()
noise = torch.randn(1, 16, 4)

config = Path(__file__).with_name("cache.yaml")
with cachekit.cached(model, config, policy={"kind": "similarity", "threshold": 0.1}) as handle:
    denoise(model, noise)

stats = handle.stats["middle"]
print(f"{stats.refreshes} refreshes, {stats.reuses} reuses, {stats.computed_share:.0%} computed")
print("refreshed at steps", handle.stats.refresh_steps("middle"))
print(handle.stats.hit_map())
