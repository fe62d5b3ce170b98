"""How the runner times a denoising loop: CPU time on the CPU, CUDA events on a GPU.

Wall time on a machine others share counts their work too. On the CPU the runner reads
the sampling thread's CPU time (the process's when torch runs more than one thread), with
the thread count fixed for the run (``timing.threads``); on CUDA it records events on the
device's stream, which time the kernels without waiting for them between calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch


class LoopTimer(Protocol):
    """Times one denoising loop at a time: from :meth:`start` to the last :meth:`stop`."""

    def start(self) -> None:
        """The first denoiser call of a pipeline call begins."""

    def stop(self) -> None:
        """A denoiser call ended; the last one before :meth:`lap` ends the loop."""

    def lap(self) -> float:
        """Seconds from :meth:`start` to the last :meth:`stop` (0 when none), and start afresh."""


@dataclass
class ClockTimer:
    """A :class:`LoopTimer` reading ``clock``, a function returning seconds (``time.thread_time``)."""

    clock: Callable[[], float]
    synchronize: Callable[[], None] = field(default=lambda: None)
    """Waits for the device before each reading (for devices without events)."""
    _start: float | None = None
    _end: float | None = None

    def start(self) -> None:
        """Read the clock: the loop begins."""
        self.synchronize()
        self._start = self.clock()

    def stop(self) -> None:
        """Read the clock: the loop may end here."""
        self.synchronize()
        self._end = self.clock()

    def lap(self) -> float:
        """Seconds between the two readings, then forget them."""
        seconds = 0.0 if self._start is None or self._end is None else self._end - self._start
        self._start = self._end = None
        return seconds


class CudaEventTimer:
    """A :class:`LoopTimer` recording CUDA events on the current stream of ``device``."""

    def __init__(self, device: torch.device):
        self.device = device
        self._begin = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._started = self._stopped = False

    def start(self) -> None:
        """Record the start event."""
        self._begin.record(torch.cuda.current_stream(self.device))
        self._started = True

    def stop(self) -> None:
        """Record (again) the end event."""
        self._end.record(torch.cuda.current_stream(self.device))
        self._stopped = True

    def lap(self) -> float:
        """Wait for the end event and return the seconds between the two events."""
        seconds = 0.0
        if self._started and self._stopped:
            self._end.synchronize()
            seconds = self._begin.elapsed_time(self._end) / 1000
        self._started = self._stopped = False
        return seconds


def loop_timer(device: str, threads: int, clock: Callable[[], float] | None = None) -> LoopTimer:
    """The timer for sampling on ``device`` with ``threads`` torch CPU threads.

    ``clock`` (seconds, e.g. a test's simulated clock) overrides the choice. Otherwise CUDA
    gets events; the CPU the thread's CPU time with one thread and the process's with more;
    other devices (``mps``) wall time, synchronised before each reading.
    """
    if clock is not None:
        return ClockTimer(clock)
    kind = torch.device(device).type
    if kind == "cuda":
        return CudaEventTimer(torch.device(device))
    if kind == "cpu":
        return ClockTimer(time.thread_time if threads == 1 else time.process_time)
    backend = getattr(torch, kind, None)
    return ClockTimer(time.perf_counter, getattr(backend, "synchronize", lambda: None))
