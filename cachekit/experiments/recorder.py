"""What the runner measures while a setting samples: the denoising loop's time and each denoiser's calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from cachekit.experiments.loop_timer import LoopTimer


@dataclass
class LoopRecorder:
    """Times the denoising loop and keeps each denoiser's first call, through forward hooks.

    The loop of one pipeline call runs from the first denoiser call's start to the last
    one's end, so text encoding and VAE decoding are not counted; ``timer`` measures it.
    """

    modules: dict[str, torch.nn.Module]
    timer: LoopTimer
    first_inputs: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _running: bool = False

    @contextmanager
    def installed(self) -> Iterator[LoopRecorder]:
        """Record while the ``with`` block runs."""
        hooks = []
        for name, module in self.modules.items():
            hooks.append(module.register_forward_pre_hook(self._before(name), with_kwargs=True))
            hooks.append(module.register_forward_hook(self._after))
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()

    def _before(self, name: str) -> Callable[..., None]:
        def before(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not self._running:
                self.timer.start()
                self._running = True
            self.first_inputs.setdefault(name, (args, kwargs))
            self.calls[name] = self.calls.get(name, 0) + 1

        return before

    def _after(self, *_: Any) -> None:
        self.timer.stop()

    def lap(self) -> float:
        """Seconds of the loop since the last lap; 0 when no denoiser ran."""
        self._running = False
        return self.timer.lap()


@dataclass
class SettingRun:
    """The samples of one setting and what was measured while sampling them."""

    images: torch.Tensor
    laps: list[float]
    """Seconds of the denoising loop of each pipeline call (each batch), in order."""
    calls: dict[str, int]
    first_inputs: dict[str, tuple[tuple[Any, ...], dict[str, Any]]]

    @property
    def generations(self) -> int:
        """Pipeline calls made."""
        return len(self.laps)

    def per_generation(self, count: int) -> float:
        """``count`` per pipeline call (a generation of one batch)."""
        return count / max(self.generations, 1)
