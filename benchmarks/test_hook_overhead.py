"""Hook overhead: a 24-block transformer, 50 steps, a never-reusing policy vs no cachekit.

Run: ``pytest benchmarks/test_hook_overhead.py --benchmark-enable -s`` (``--device cuda``: on a
GPU, timed by CUDA events). The ratio of the medians of interleaved rounds (CPU time, one
thread: steady on a shared machine) is printed and stored in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_medians

STEPS = 50


class Block(nn.Module):
    """Pre-norm attention + MLP block with additive time conditioning."""

    def __init__(self, width: int, heads: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x + c)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, depth: int = 24, width: int = 64, channels: int = 4):
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.time = nn.Linear(1, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.out = nn.Linear(width, channels)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        c = self.time(timestep.reshape(1, 1).to(sample.dtype) / 1000)[:, None]
        x = self.embed(sample)
        for block in self.blocks:
            x = block(x, c)
        return self.out(x)


def generate(model: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for t in torch.linspace(999, 0, STEPS, device=sample.device):
            sample = sample - 0.02 * model(sample, t)
    return sample


def test_hook_overhead_never_reuse(benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measure(benchmark)
    finally:
        torch.set_num_threads(threads)


def measure(benchmark) -> None:
    torch.manual_seed(0)
    plain, hooked = current().model(Transformer().eval()), current().model(Transformer().eval())
    hooked.load_state_dict(plain.state_dict())
    config = {
        "policy": {"kind": "uniform", "interval": 1},
        "declare": [{"name": "middle", "entry": "blocks.1", "exit": "blocks.22"}],
    }
    sample = current().inputs(torch.randn(1, 128, 4))
    with cachekit.cached(hooked, config) as handle:
        medians = interleaved_medians(
            {"plain": lambda: generate(plain, sample), "cachekit": lambda: generate(hooked, sample)},
            rounds=5,
            clock=time.process_time,
        )
        benchmark.pedantic(generate, args=(hooked, sample), rounds=1, iterations=1)
        assert torch.equal(generate(hooked, sample), generate(plain, sample))
    overhead = medians["cachekit"] / medians["plain"] - 1
    benchmark.extra_info.update(
        plain_s=medians["plain"], cachekit_s=medians["cachekit"], overhead=overhead, refreshes=handle.stats.refreshes
    )
    print(
        f"\nhook overhead, never reuse, 24 blocks x {STEPS} steps: {100 * overhead:+.2f}% "
        f"(plain {medians['plain']:.3f}s, cachekit {medians['cachekit']:.3f}s)"
    )
