"""One denoiser at run time: its clock, the step of the call in progress, its region runners.

At the first call of each generation the number of steps is known (from the scheduler, or
the config's ``num_steps`` for a bare model): a few-step generation sets its
:class:`~cachekit.engine.stats.FewSteps` ceiling on every region's stats and warns once per
step count with :class:`~cachekit.errors.FewStepsWarning`; a denoiser sharded over ranks
checks there that every rank runs as many steps and batch rows
(:meth:`~cachekit.engine.ranks.RankGroup.check_agreement`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from cachekit.clock import DenoisingClock, StepInfo, find_sample
from cachekit.denoiser import Denoiser
from cachekit.engine.keyed import KeyedRunner
from cachekit.engine.ranks import RankGroup, rank_group
from cachekit.engine.runner import RegionRunner
from cachekit.engine.stats import FEW_STEPS, FewSteps
from cachekit.errors import FewStepsWarning

Runner = RegionRunner | KeyedRunner
"""What runs one region: decided by a policy (:class:`RegionRunner`) or keyed on exact inputs."""


class DenoiserRuntime:
    """One denoiser's clock, its current step, and the runners of its regions."""

    def __init__(self, denoiser: Denoiser, num_steps: int | None, process_group: Any = "auto"):
        self.denoiser = denoiser
        self.process_group = process_group
        """The config's ``process_group``, resolved at each generation's first call (parallelism
        enabled on the model after cachekit counts too)."""
        self.ranks: RankGroup | None = None
        """The ranks this generation is sharded over, which decide alike (``None``: this process alone)."""
        self.runners: list[Runner] = []
        self.clock = DenoisingClock(num_steps, self._new_generation, self._generation_ended)
        self.current_step: StepInfo | None = None
        self.calls = 0
        """Denoiser calls in the current generation."""
        self.owner: object = None
        """The handle that installed this runtime (kept alive by the model's hooks through it)."""
        self.warned_steps: set[int] = set()
        """Step counts already warned about as few-step."""
        self.call_ended: list[Callable[[], None]] = []
        """Called after each denoiser call, even one that failed (keyed regions count their calls there)."""

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
        step = self.clock.tick(args, kwargs)
        if not self.calls:
            self._check_length(step.num_steps)
            self.ranks = rank_group(self.process_group, self.denoiser.module)
            if self.ranks is not None:
                sample = find_sample(args, kwargs)
                batch = None if sample is None else sample.shape[0] if sample.dim() else 1
                device = torch.device("cpu") if sample is None else sample.device
                self.ranks.check_agreement(self.denoiser.name, step.num_steps, batch, device)
        return step

    def _check_length(self, num_steps: int | None) -> None:
        """At a generation's first call: record (and warn once about) a few-step generation."""
        few = FewSteps.of(num_steps)
        for runner in self.runners:
            runner.stats.few_steps = few
        if few is None or few.num_steps in self.warned_steps:
            return
        self.warned_steps.add(few.num_steps)
        warnings.warn(
            f"{few} (fewer than {FEW_STEPS} steps: every region computes at the first step, and each reuse "
            "stands in for a long stretch of the schedule); silence with "
            "warnings.filterwarnings('ignore', category=cachekit.FewStepsWarning)",
            FewStepsWarning,
            stacklevel=2,
        )

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
                for ended in self.call_ended:
                    ended()

        return forward
