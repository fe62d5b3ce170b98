"""torch.compile with inductor on CPU: compile time, and the speed of compiled + cached generations.

Run: ``pytest benchmarks/test_compile.py --benchmark-enable -s``. A 12-block transformer
(the hook-overhead benchmark's blocks), 128 tokens, 20 steps, ``uniform`` interval 3, one
thread. Five candidates run side by side in interleaved rounds (CPU time): eager, eager +
cachekit, compiled, compiled + cachekit (compiled in place after enabling: a graph break at
the clock and at each region), and compiled + cachekit in static mode (cachekit enabled on
the compiled module, ``fullgraph=True``). Each compiled candidate's compile time is its first
generation's time (from a fresh dynamo) less a steady generation's. Speedups are against eager without cachekit,
with the spread (lowest and highest round) of each candidate; every cached candidate's output
is checked against the eager cached output.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch._inductor.config
from torch import nn

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_times
from benchmarks.test_hook_overhead import Transformer
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 20
CONFIG: dict[str, Any] = {
    "policy": {"kind": "uniform", "interval": 3},
    "declare": [{"name": "middle", "entry": "blocks.1", "exit": "blocks.10"}],
    "num_steps": STEPS,
}


def generate(model: Callable[..., torch.Tensor], sample: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for t in torch.linspace(999, 0, STEPS, device=sample.device):
            sample = sample - 0.02 * model(sample, t)
    return sample


def compile_time(run: Callable[[], torch.Tensor]) -> float:
    """CPU seconds of a first generation from a fresh dynamo (it compiles), less those of a steady one
    (with ``--device cuda``, seconds of CUDA events)."""
    torch._dynamo.reset()
    first = current().seconds(run, time.process_time)
    return first - current().seconds(run, time.process_time)


def model() -> nn.Module:
    torch.manual_seed(0)
    return current().model(Transformer(depth=12).eval())  # --device, --dtype


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's import
@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled:UserWarning")  # what force_disable_caches says
def test_inductor_compile_and_speed(benchmark):
    with (
        torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True),
        torch._inductor.config.patch(force_disable_caches=True),  # compile times from cold, not from disk
    ):
        measure(benchmark)
    torch._dynamo.reset()


def measure(benchmark) -> None:
    """Five models compiled side by side share code objects (the blocks' ``forward``): the
    recompile limit is raised so that none falls back to eager, and a limit hit fails."""
    sample = current().inputs(torch.randn(1, 128, 4))
    eager, eager_cached, compiled, dynamic, static = (model() for _ in range(5))
    compiled.compile()
    cachekit.enable(eager_cached, CONFIG)
    cachekit.enable(dynamic, CONFIG)
    dynamic.compile()
    static_compiled = torch.compile(static, fullgraph=True)
    cachekit.enable(static_compiled, CONFIG, static=True)
    candidates = {
        "eager": lambda: generate(eager, sample),
        "eager + cachekit": lambda: generate(eager_cached, sample),
        "compiled": lambda: generate(compiled, sample),
        "compiled + cachekit": lambda: generate(dynamic, sample),
        "compiled + cachekit, static": lambda: generate(static_compiled, sample),
    }
    compile_s = {name: compile_time(candidates[name]) for name in list(candidates)[2:]}
    torch._dynamo.reset()
    reference = candidates["eager + cachekit"]()
    for name in ("compiled + cachekit", "compiled + cachekit, static"):
        torch.testing.assert_close(candidates[name](), reference, rtol=1e-4, atol=1e-4)
    times = interleaved_times(candidates, rounds=7, warmup=1, clock=time.process_time)
    benchmark.pedantic(candidates["compiled + cachekit, static"], rounds=1, iterations=1)
    base = statistics.median(times["eager"])
    print(f"\ninductor on CPU, 12 blocks x {STEPS} steps, uniform interval 3 (CPU time, 7 interleaved rounds):")
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"{base / max(values):.2f}-{base / min(values):.2f}x"
        compile_note = f", compile {compile_s[name]:.1f}s" if name in compile_s else ""
        print(f"  {name:28s} {median:.3f}s  speedup {base / median:.2f}x ({spread}){compile_note}")
        benchmark.extra_info[name] = {"median_s": median, "speedup": base / median, "compile_s": compile_s.get(name)}
