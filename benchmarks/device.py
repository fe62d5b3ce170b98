"""The device and dtype the benchmarks run on, and how they time it there.

``pytest benchmarks --device cuda`` (the option is :mod:`benchmarks.conftest`'s; the
``CACHEKIT_BENCH_DEVICE`` environment variable sets its default, ``cpu`` without it) moves
every benchmark's models and inputs to that device, and ``--dtype float16`` (or
``CACHEKIT_BENCH_DTYPE``; ``float32`` without it) casts the models' weights. Timing follows
the device: on a CPU the clock a benchmark names (most read the process's CPU time, one
thread), on CUDA events recorded on the current stream, which time the kernels without
waiting for each of them (:mod:`cachekit.experiments.loop_timer`'s timers).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cachekit.experiments.loop_timer import ClockTimer, CudaEventTimer, LoopTimer

DEVICE_ENV, DTYPE_ENV = "CACHEKIT_BENCH_DEVICE", "CACHEKIT_BENCH_DTYPE"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Target:
    """Where the benchmarks run: a torch device and the dtype of the models' weights."""

    device: torch.device
    dtype: torch.dtype = torch.float32

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def timer(self, clock: Callable[[], float]) -> LoopTimer:
        """CUDA events on a GPU; ``clock`` (seconds) read around the timed code otherwise."""
        return CudaEventTimer(self.device) if self.is_cuda else ClockTimer(clock)

    def seconds(self, run: Callable[[], Any], clock: Callable[[], float]) -> float:
        """Seconds ``run()`` takes, timed by :meth:`timer`."""
        timer = self.timer(clock)
        timer.start()
        run()
        timer.stop()
        return timer.lap()

    def model(self, module: Any) -> Any:
        """``module`` (an ``nn.Module`` or a diffusers pipeline) moved to the device and dtype."""
        return module.to(self.device, self.dtype) if self.dtype != torch.float32 else module.to(self.device)

    def inputs(self, value: Any) -> Any:
        """``value`` with every tensor in it moved to the device, floating ones cast to the dtype;
        dicts, lists and tuples walked."""
        if isinstance(value, torch.Tensor):
            return value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
        if isinstance(value, dict):
            return {key: self.inputs(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.inputs(item) for item in value)
        return value

    def describe(self) -> str:
        """``"cuda (NVIDIA H200), float16"`` or ``"cpu, float32"``, for the tables' titles."""
        name = f"{self.device} ({torch.cuda.get_device_name(self.device)})" if self.is_cuda else str(self.device)
        return f"{name}, {str(self.dtype).removeprefix('torch.')}"


def parse(device: str, dtype: str) -> Target:
    """The :class:`Target` of a ``--device`` and ``--dtype``; a clear error for a device that is not there."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; known: {', '.join(DTYPES)}")
    target = Target(torch.device(device), DTYPES[dtype])
    if target.is_cuda and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch {torch.__version__} sees no CUDA device here")
    if target.device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: the benchmarks run on 'cpu' or 'cuda' (optionally 'cuda:N')")
    return target


_selected: list[Target] = []


def select(target: Target) -> None:
    """Make ``target`` the one :func:`current` returns (benchmarks/conftest.py, at start-up)."""
    _selected[:] = [target]


def current() -> Target:
    """The selected target; without one (a benchmark imported outside pytest) the environment's."""
    if not _selected:
        select(parse(os.environ.get(DEVICE_ENV, "cpu"), os.environ.get(DTYPE_ENV, "float32")))
    return _selected[0]
