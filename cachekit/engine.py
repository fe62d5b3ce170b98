"""The hook engine: shadows ``forward`` on the denoiser and on each region's modules.

Each denoiser call ticks its clock; each region decides at its entry module whether to
refresh or reuse, and every module of the region follows that decision within the call.
Everything installed is undone in reverse order by :meth:`CacheHandle.disable`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cachekit.clock import DenoisingClock, SchedulerTap, StepInfo, default_step_completed
from cachekit.denoiser import Denoiser
from cachekit.errors import AlreadyEnabledError
from cachekit.forecast import Forecast, extrapolate, forecast_ratio
from cachekit.modules import get_submodule
from cachekit.patching import MethodPatch
from cachekit.policies.base import Policy
from cachekit.probes import Probe, get_probe, relative_l1
from cachekit.region import Region
from cachekit.state import CacheStats, ContextState, RegionState, RegionStats

_ENABLED: weakref.WeakKeyDictionary[nn.Module, CacheHandle] = weakref.WeakKeyDictionary()
_TAPS: dict[int, SchedulerTap] = {}


@dataclass
class _Decision:
    """The decision of one region for one denoiser call."""

    step: StepInfo
    state: ContextState
    refresh: bool
    entry_inputs: tuple[torch.Tensor, ...]


class RegionRunner:
    """Runs one region: decides at its entry, then stores or reuses through its modules."""

    def __init__(
        self,
        region: Region,
        policy: Policy,
        denoiser: DenoiserRuntime,
        stats: RegionStats,
        stats_name: str,
        forecast: Forecast = "none",
    ):
        self.region = region
        self.stats_name = stats_name
        self.policy = policy
        self.forecasts = forecast == "linear"
        self.denoiser = denoiser
        self.stats = stats
        self.state = RegionState()
        self.probe: Probe | None = get_probe(policy.probe) if policy.uses_drift else None  # type: ignore[attr-defined]
        self.watched_paths = self.probe.watched_modules(region) if self.probe else ()
        self.watched: dict[str, torch.Tensor] = {}
        self.decision: _Decision | None = None

    def reset(self) -> None:
        """Drop every context's cache and the hit map of the generation."""
        self.state.reset()
        self.decision = None
        self.stats.new_generation()

    @torch.compiler.disable
    def decide(self, step: StepInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Decision:
        """Ask the policy at the entry module (always refresh when nothing is stored)."""
        state = self.state.context(step.context)
        memory = state.memory
        needs_inputs = self.region.mode == "residual" or self.probe is not None
        entry_inputs = self.region.io.read_inputs(args, kwargs) if needs_inputs else ()
        if self.probe is not None:
            self._measure_drift(state, entry_inputs)
        refresh = self.policy.should_refresh(step, memory) or not memory.has_cache
        if refresh:
            if self.forecasts:
                state.previous_refresh_step = memory.last_refresh_step
            memory.last_refresh_step = step.index
            memory.consecutive_reuses = 0
            memory.accumulated_drift = 0.0
        else:
            memory.consecutive_reuses += 1
        self.stats.record(step.index, step.context, refresh)
        self.decision = _Decision(step, state, refresh, entry_inputs)
        return self.decision

    def _measure_drift(self, state: ContextState, entry_inputs: tuple[torch.Tensor, ...]) -> None:
        assert self.probe is not None
        probe = self.probe.measure(entry_inputs, self.watched).detach()
        previous = state.previous_probe
        if previous is not None and previous.shape == probe.shape:
            state.memory.accumulated_drift += relative_l1(probe, previous)
        state.previous_probe = probe

    def wrap_watched(self, path: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of a module whose input a probe reads: record it, then run as usual."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.denoiser.current_step is not None:
                self.watched[path] = self.region.io.read_inputs(args, kwargs)[0]
            return original(*args, **kwargs)

        return forward

    def wrap(self, path: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of the region's module at ``path``."""
        region = self.region
        is_entry, is_exit = path == region.entry, path == region.exit
        replays = region.inner == "replay" and not is_exit
        stores_output = replays or (is_exit and region.mode == "output")
        io = region.io

        def forward(*args: Any, **kwargs: Any) -> Any:
            step = self.denoiser.current_step
            if step is None:
                return original(*args, **kwargs)
            decision = self.decide(step, args, kwargs) if is_entry else self.decision
            if decision is None or decision.step is not step:
                return original(*args, **kwargs)
            state = decision.state
            if decision.refresh:
                output = original(*args, **kwargs)
                if stores_output:
                    if self.forecasts and path in state.outputs:
                        state.previous_outputs[path] = state.outputs[path]
                    state.outputs[path] = output
                if is_exit:
                    if region.mode == "residual":
                        exits = io.read_outputs(output)
                        if self.forecasts:
                            state.previous_residual = state.residual
                        state.residual = tuple(
                            _difference(out, inp) for out, inp in zip(exits, decision.entry_inputs, strict=False)
                        )
                    state.memory.has_cache = True
                return output
            if is_exit:
                if region.mode == "output":
                    return self._served(state, state.outputs[path], state.previous_outputs.get(path), decision.step)
                residual = self._served(state, state.residual, state.previous_residual, decision.step)
                pairs = zip(decision.entry_inputs, residual, strict=False)
                return io.build_output(tuple(_sum(inp, res) for inp, res in pairs))
            if replays:
                return self._served(state, state.outputs[path], state.previous_outputs.get(path), decision.step)
            return io.build_output(io.read_inputs(args, kwargs))

        return forward

    def _served(self, state: ContextState, latest: Any, previous: Any, step: StepInfo) -> Any:
        """What a reuse step serves: the stored result, or its forecast for this step."""
        if not self.forecasts or previous is None:
            return latest
        ratio = forecast_ratio(step.index, state.previous_refresh_step, state.memory.last_refresh_step)
        return latest if ratio is None else extrapolate(latest, previous, ratio)


def _difference(output: torch.Tensor | None, entry: torch.Tensor) -> torch.Tensor | None:
    """A stream's residual; ``None`` where the exit returns no tensor for it (SD3's last block)."""
    return None if output is None else output - entry


def _sum(entry: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor | None:
    """A stream rebuilt on reuse: still ``None`` where the exit returned ``None`` for it."""
    return None if residual is None else entry + residual


class DenoiserRuntime:
    """One denoiser's clock, its current step, and the runners of its regions."""

    def __init__(self, denoiser: Denoiser, num_steps: int | None):
        self.denoiser = denoiser
        self.runners: list[RegionRunner] = []
        self.clock = DenoisingClock(num_steps=num_steps, on_new_generation=self._new_generation)
        self.current_step: StepInfo | None = None

    def _new_generation(self) -> None:
        for runner in self.runners:
            runner.reset()

    @torch.compiler.disable
    def _tick(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepInfo:
        return self.clock.tick(args, kwargs)

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of the denoiser: tick the clock, run, then leave the step."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            outer = self.current_step
            self.current_step = self._tick(args, kwargs)
            try:
                return original(*args, **kwargs)
            finally:
                self.current_step = outer

        return forward


class RegionView:
    """What a :class:`CacheHandle` shows of one installed region: read-only, always current."""

    def __init__(self, runner: RegionRunner):
        self._runner = runner

    @property
    def name(self) -> str:
        """The region's name in the stats (``denoiser/region`` when there are several denoisers)."""
        return self._runner.stats_name

    @property
    def region(self) -> Region:
        """The installed region."""
        return self._runner.region

    @property
    def denoiser(self) -> Denoiser:
        """The denoiser the region belongs to."""
        return self._runner.denoiser.denoiser

    @property
    def stats(self) -> RegionStats:
        """Refreshes, reuses and the hit map of this region."""
        return self._runner.stats

    @property
    def cache_bytes(self) -> int:
        """Bytes of tensors this region holds between refreshes, over every context."""
        return 0

    def __repr__(self) -> str:
        return f"<RegionView {self.name!r} of {self.denoiser.name!r}>"


@dataclass(frozen=True)
class RegionPlan:
    """A region to install, with the policy chosen for it and how its reuse steps forecast."""

    region: Region
    policy: Policy
    forecast: Forecast = "none"


class CacheHandle:
    """What :func:`cachekit.enable` returns: the installed caching, its stats and its undo.

    Use as a context manager to disable on exit. ``stats`` counts refreshes and reuses per
    region; ``stats.hit_map()`` shows the latest generation step by step.
    """

    def __init__(self) -> None:
        self.runtimes: list[DenoiserRuntime] = []
        self.stats = CacheStats([])
        self._patches: list[MethodPatch] = []
        self._taps: list[tuple[SchedulerTap, DenoisingClock]] = []
        self.enabled = False

    @property
    def regions(self) -> dict[str, Region]:
        """The installed regions by stats name (``denoiser/region`` when there are several denoisers)."""
        return {runner.stats_name: runner.region for rt in self.runtimes for runner in rt.runners}

    @property
    def views(self) -> dict[str, RegionView]:
        """A read-only view of every installed region, by stats name."""
        return {runner.stats_name: RegionView(runner) for rt in self.runtimes for runner in rt.runners}

    def install(
        self,
        plans: Sequence[tuple[Denoiser, Sequence[RegionPlan], int | None]],
        step_completed: Callable[[Any], bool] = default_step_completed,
    ) -> CacheHandle:
        """Install hooks for every denoiser and region; on any failure undo what was done."""
        for denoiser, _, _ in plans:
            if denoiser.module in _ENABLED:
                raise AlreadyEnabledError(
                    f"cachekit is already enabled on this {type(denoiser.module).__name__} "
                    f"({denoiser.name!r}); call disable() on the existing handle first"
                )
        qualify = len(plans) > 1
        names = [_stats_name(d, plan.region, qualify) for d, region_plans, _ in plans for plan in region_plans]
        self.stats = CacheStats(names)
        try:
            for denoiser, region_plans, num_steps in plans:
                self._install_denoiser(denoiser, region_plans, num_steps, step_completed, qualify)
        except BaseException:
            self.disable()
            raise
        self.enabled = True
        return self

    def _install_denoiser(
        self,
        denoiser: Denoiser,
        region_plans: Sequence[RegionPlan],
        num_steps: int | None,
        step_completed: Callable[[Any], bool],
        qualify: bool,
    ) -> None:
        runtime = DenoiserRuntime(denoiser, num_steps)
        self.runtimes.append(runtime)
        model = denoiser.module
        for plan in region_plans:
            name = _stats_name(denoiser, plan.region, qualify)
            runner = RegionRunner(plan.region, plan.policy, runtime, self.stats[name], name, plan.forecast)
            runtime.runners.append(runner)
            for path in runner.watched_paths:
                self._patch(get_submodule(model, path), runner.wrap_watched, path)
            for path in plan.region.modules:
                self._patch(get_submodule(model, path), runner.wrap, path)
        self._patches.append(MethodPatch(model, "forward", runtime.wrap))
        _ENABLED[model] = self
        if denoiser.scheduler is not None:
            tap = _TAPS.get(id(denoiser.scheduler))
            if tap is None:
                tap = _TAPS[id(denoiser.scheduler)] = SchedulerTap(denoiser.scheduler, step_completed)
                tap.install()
            tap.bind(runtime.clock)
            self._taps.append((tap, runtime.clock))

    def _patch(
        self, module: nn.Module, wrap: Callable[[str, Callable[..., Any]], Callable[..., Any]], path: str
    ) -> None:
        self._patches.append(MethodPatch(module, "forward", lambda original: wrap(path, original)))

    def disable(self) -> None:
        """Remove every hook, newest first, and drop all caches; safe to call twice."""
        while self._patches:
            self._patches.pop().undo()
        while self._taps:
            tap, clock = self._taps.pop()
            tap.unbind(clock)
            if not tap.clocks:
                tap.uninstall()
                _TAPS.pop(id(tap.scheduler), None)
        for runtime in self.runtimes:
            _ENABLED.pop(runtime.denoiser.module, None)
            for runner in runtime.runners:
                runner.state.reset()
        self.enabled = False

    def reset(self) -> None:
        """Drop every cache now; the next call of each region refreshes."""
        for runtime in self.runtimes:
            runtime.clock.start_generation()

    def __enter__(self) -> CacheHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disable()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<CacheHandle {state}: regions {list(self.regions)}>"


def _stats_name(denoiser: Denoiser, region: Region, qualify: bool) -> str:
    return f"{denoiser.name}/{region.name}" if qualify else region.name


def handle_of(module: nn.Module) -> CacheHandle | None:
    """The handle enabled on ``module``, if any."""
    return _ENABLED.get(module)
