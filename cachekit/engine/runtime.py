"""One denoiser at run time: its clock, the step of the call in progress, its region runners."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cachekit.clock import DenoisingClock, StepInfo
from cachekit.denoiser import Denoiser
from cachekit.engine.runner import RegionRunner


class DenoiserRuntime:
    """One denoiser's clock, its current step, and the runners of its regions."""

    def __init__(self, denoiser: Denoiser, num_steps: int | None):
        self.denoiser = denoiser
        self.runners: list[RegionRunner] = []
        self.clock = DenoisingClock(num_steps, self._new_generation, self._generation_ended)
        self.current_step: StepInfo | None = None
        self.calls = 0
        """Denoiser calls in the current generation."""
        self.owner: object = None
        """The handle that installed this runtime (kept alive by the model's hooks through it)."""

    def _new_generation(self) -> None:
        if self.calls:
            for runner in self.runners:
                runner.check_ran(self.calls)
        self.calls = 0
        for runner in self.runners:
            runner.reset()

    def _generation_ended(self) -> None:
        """The scheduler finished the last step: nothing stored can serve again, so free it now."""
        for runner in self.runners:
            runner.release()

    @torch.compiler.disable
    def _tick(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepInfo:
        return self.clock.tick(args, kwargs)

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of the denoiser: tick the clock, run, then leave the step."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            outer = self.current_step
            self.current_step = self._tick(args, kwargs)
            self.clock.in_call = True
            self.calls += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.current_step = outer
                self.clock.in_call = outer is not None

        return forward
