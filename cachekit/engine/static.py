"""Static mode: every decision is taken before the denoiser's compiled forward runs.

A policy with a schedule fixed in advance (one that says its :meth:`~cachekit.policies.base.Policy.refresh_steps`:
``uniform``, ``nonuniform``, a plugin's calibrated kind) needs nothing the forward computes,
so its decisions can be taken in the denoiser's clock, before the model runs. Inside the
forward, a region then only reads a bool that says refresh or reuse: no probe, no policy,
no ``torch.compiler.disable``. ``torch.compile`` turns each path into one graph (a recompile
per path, chosen by its guard on that bool), so ``fullgraph=True`` compiles with no break
once the clock runs outside the compiled code (cachekit enabled on the compiled module). This
is the split DeepCache's authors suggest for compiling it (horseee/DeepCache#26): one graph
for the full network, one for the shallow part that runs on reuse steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from cachekit.clock import StepInfo, find_sample
from cachekit.engine.runner import Decision, RegionRunner
from cachekit.engine.runtime import DenoiserRuntime
from cachekit.errors import ConfigError, PolicyError
from cachekit.policies.base import Policy
from cachekit.region import Region


def has_fixed_schedule(policy: Policy) -> bool:
    """Whether ``policy`` says its refresh steps in advance: its kind implements ``refresh_steps``."""
    return type(policy).refresh_steps is not Policy.refresh_steps


def check_static(plans: Iterable[tuple[Region, Policy]]) -> None:
    """Refuse static mode for regions whose policy decides from what the forward measures
    (keyed regions follow no policy and run as they always do)."""
    adaptive = {
        region.name: policy.kind
        for region, policy in plans
        if region.mode != "keyed" and not has_fixed_schedule(policy)
    }
    if adaptive:
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in adaptive.items())
        raise ConfigError(
            f"static: true needs a policy whose refresh steps are fixed in advance (uniform, nonuniform, or a "
            f"kind that implements refresh_steps); regions {listed} decide at run time from what the model "
            "computes. Use static: false for them (compiled models still run, with a graph break per region)"
        )


CLOCK_INSIDE = (
    "cachekit static mode: the clock runs inside the compiled code, so fullgraph=True cannot hold. Compile "
    "first and enable cachekit on the compiled module: cachekit.enable(torch.compile(model, fullgraph=True), "
    "config, static=True) (for a pipeline: pipe.transformer = torch.compile(pipe.transformer, ...), then enable)"
)
"""Why a compile that reaches the clock stops there (the message ``fullgraph=True`` shows)."""


class StaticRegionRunner(RegionRunner):
    """A region whose decision the clock takes (:meth:`plan`) before the forward reaches it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.schedules: dict[int, frozenset[int]] = {}
        """The policy's refresh steps, by number of steps."""

    def plan(self, step: StepInfo, batch: int) -> None:
        """Take this call's decision from the policy's schedule (always refresh when nothing is stored)."""
        state = self.state.context(step.context)
        refresh = step.index in self._schedule(step.num_steps) or not state.has_cache
        self.stats.record(step.index, step.context, batch if refresh else 0, batch)
        self.decision = Decision(step, state, refresh, None, ())

    def _schedule(self, num_steps: int | None) -> frozenset[int]:
        if num_steps is None:
            raise PolicyError(
                f"region {self.stats_name!r}: static mode needs the number of steps: enable cachekit on a "
                "pipeline with a scheduler, or set 'num_steps' in the config for a bare model"
            )
        schedule = self.schedules.get(num_steps)
        if schedule is None:
            steps = self.policy.refresh_steps(num_steps)
            if steps is None:
                raise PolicyError(
                    f"region {self.stats_name!r}: policy {self.policy.kind!r} gives no refresh steps for "
                    f"{num_steps} steps, which static mode needs"
                )
            schedule = self.schedules[num_steps] = frozenset(steps)
        return schedule

    def current(self, is_entry: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decision | None:
        """The planned decision; at the entry it takes the inputs a residual is added to."""
        decision = self.decision
        if self.runtime.current_step is None or decision is None:
            return None
        if is_entry:
            self.reached = True
            if self.needs_entry_inputs:
                decision.entry_inputs = self.region.io.read_inputs(args, kwargs)
        return decision


class StaticRuntime(DenoiserRuntime):
    """A denoiser's clock that also plans every region's decision for the call it starts."""

    @torch.compiler.disable(reason=CLOCK_INSIDE)
    def _tick(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepInfo:
        step = super()._tick(args, kwargs)
        sample = find_sample(args, kwargs)
        batch = len(sample) if sample is not None and sample.dim() else 1
        for runner in self.runners:
            if isinstance(runner, StaticRegionRunner):
                runner.plan(step, batch)
        return step
