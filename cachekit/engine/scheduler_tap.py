"""Hearing a scheduler: its ``set_timesteps`` and ``step`` calls drive the denoising clocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachekit.clock import DenoisingClock, default_step_completed
from cachekit.engine.patching import MethodPatch


class SchedulerTap:
    """Patches a scheduler so that every clock bound to it hears its calls.

    ``set_timesteps`` starts a generation in each clock; each ``step`` advances them. One
    tap serves every denoiser that shares the scheduler (a pipeline with two experts).
    """

    def __init__(self, scheduler: Any, step_completed: Callable[[Any], bool] = default_step_completed):
        self.scheduler = scheduler
        self.step_completed = step_completed
        self.clocks: list[DenoisingClock] = []
        self.patches: list[MethodPatch] = []

    def bind(self, clock: DenoisingClock) -> None:
        """Drive ``clock`` from this scheduler."""
        clock.scheduler = self.scheduler
        self.clocks.append(clock)

    def unbind(self, clock: DenoisingClock) -> None:
        """Stop driving ``clock``."""
        self.clocks.remove(clock)
        clock.scheduler = None

    def install(self) -> None:
        """Patch ``set_timesteps`` and ``step`` on the scheduler instance."""
        self.patches.append(MethodPatch(self.scheduler, "set_timesteps", self._wrap_set_timesteps))
        self.patches.append(MethodPatch(self.scheduler, "step", self._wrap_step))

    def uninstall(self) -> None:
        """Undo the patches, newest first."""
        while self.patches:
            self.patches.pop().undo()

    def _wrap_set_timesteps(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def set_timesteps(*args: Any, **kwargs: Any) -> Any:
            for clock in self.clocks:
                clock.claim()
            result = original(*args, **kwargs)
            for clock in self.clocks:
                clock.start_generation()
            return result

        return set_timesteps

    def _wrap_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            for clock in self.clocks:
                clock.claim()
            result = original(*args, **kwargs)
            completed = self.step_completed(self.scheduler)
            for clock in self.clocks:
                clock.scheduler_stepped(completed)
            return result

        return step
