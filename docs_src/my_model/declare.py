"""Cache part of any ``nn.Module``: regions declared by module path in a YAML file."""

from pathlib import Path

import torch
from model import MyDiT, denoise

import cachekit

torch.manual_seed(0)
model = MyDiT().eval()
noise = torch.randn(1, 16, 4)

handle = cachekit.enable(model, Path(__file__).with_name("cache.yaml"))
sample = denoise(model, noise)
print(handle.stats.hit_map())
handle.disable()
