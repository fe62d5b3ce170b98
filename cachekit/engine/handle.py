"""The handle :func:`cachekit.enable` returns: installs the hooks, shows the stats, undoes it all.

The engine shadows ``forward`` on the denoiser (its clock) and on each region's modules
(refresh or reuse), and patches the scheduler's ``set_timesteps`` and ``step``. Everything
installed is undone in reverse order by :meth:`CacheHandle.disable`. Nothing global keeps a
model alive: the registry of enabled models holds weak references only.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from cachekit.clock import DenoisingClock, default_step_completed
from cachekit.denoiser import Denoiser
from cachekit.engine.keyed import KeyedRunner, KeyedState
from cachekit.engine.patching import MethodPatch
from cachekit.engine.ranks import rank_group
from cachekit.engine.runner import RegionRunner
from cachekit.engine.runtime import DenoiserRuntime, Runner
from cachekit.engine.scheduler_tap import SchedulerTap
from cachekit.engine.state import RegionState
from cachekit.engine.static import StaticRegionRunner, StaticRuntime
from cachekit.engine.stats import CacheStats, RegionStats
from cachekit.errors import AlreadyEnabledError
from cachekit.modules import get_submodule
from cachekit.policies.base import Policy, PolicyBinding
from cachekit.region import Region
from cachekit.reuse.spec import ForecastSpec

_ENABLED: weakref.WeakKeyDictionary[nn.Module, weakref.ref[CacheHandle]] = weakref.WeakKeyDictionary()
_TAPS: weakref.WeakValueDictionary[int, SchedulerTap] = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class RegionView:
    """What a :class:`CacheHandle` shows of one installed region; its stats and bytes stay current.

    Attributes:
        name: the region's name in the stats (``denoiser/region`` when there are several denoisers).
        region: the installed region.
        denoiser: the denoiser it belongs to.
        policy: the policy that decides for it.
        stats: its refreshes, reuses and hit map (the live object, updated as it runs).
    """

    name: str
    region: Region
    denoiser: Denoiser
    policy: Policy
    stats: RegionStats
    state: RegionState | KeyedState = field(repr=False)

    @property
    def cache_bytes(self) -> int:
        """Bytes of tensors this region holds between refreshes, over every context."""
        return self.state.nbytes()


@dataclass(frozen=True)
class RegionPlan:
    """A region to install, the policy chosen for it, and the forecast its reuse steps are served."""

    region: Region
    policy: Policy
    forecast: ForecastSpec


class CacheHandle:
    """What :func:`cachekit.enable` returns: the installed caching, its stats and its undo.

    Use as a context manager to disable on exit. ``stats`` counts refreshes and reuses per
    region; ``stats.hit_map()`` shows the latest generation step by step; ``views`` shows
    each region with the bytes it holds.
    """

    def __init__(self) -> None:
        self.runtimes: list[DenoiserRuntime] = []
        """Engine internals: each denoiser's clock and region runners (read :attr:`views` instead)."""
        self.stats = CacheStats([])
        self._patches: list[MethodPatch] = []
        self._taps: list[tuple[SchedulerTap, DenoisingClock]] = []
        self.enabled = False

    @property
    def views(self) -> dict[str, RegionView]:
        """A read-only view of every installed region, by stats name."""
        return {
            runner.stats_name: RegionView(
                runner.stats_name, runner.region, runner.runtime.denoiser, runner.policy, runner.stats, runner.state
            )
            for runner in self._runners()
        }

    @property
    def regions(self) -> dict[str, Region]:
        """The installed regions by stats name (``denoiser/region`` when there are several denoisers)."""
        return {runner.stats_name: runner.region for runner in self._runners()}

    @property
    def cache_bytes(self) -> int:
        """Bytes of tensors held between refreshes, over every region and context."""
        return sum(runner.state.nbytes() for runner in self._runners())

    def _runners(self) -> list[Runner]:
        return [runner for runtime in self.runtimes for runner in runtime.runners]

    def install(
        self,
        plans: Sequence[tuple[Denoiser, Sequence[RegionPlan], int | None]],
        step_completed: Callable[[Any], bool] = default_step_completed,
        process_group: Any = "auto",
        static: bool = False,
    ) -> CacheHandle:
        """Install hooks for every denoiser and region; on any failure undo what was done.

        ``process_group`` is the config's: which ranks each denoiser's decisions are agreed over
        (:func:`~cachekit.engine.ranks.rank_group`).
        ``static`` takes every decision in the clock, before the forward runs (:mod:`cachekit.engine.static`).
        """
        for denoiser, _, _ in plans:
            if handle_of(denoiser.module) is not None:
                raise AlreadyEnabledError(
                    f"cachekit is already enabled on this {type(denoiser.module).__name__} "
                    f"({denoiser.name!r}); call disable() on the existing handle first"
                )
        qualify = len(plans) > 1
        names = [_stats_name(d, plan.region, qualify) for d, region_plans, _ in plans for plan in region_plans]
        self.stats = CacheStats(names)
        try:
            for denoiser, region_plans, num_steps in plans:
                self._install_denoiser(
                    denoiser, region_plans, num_steps, step_completed, qualify, process_group, static
                )
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
        process_group: Any,
        static: bool,
    ) -> None:
        rank_group(process_group, denoiser.module)  # a group that cannot be is an error now, not at the first call
        runtime = (StaticRuntime if static else DenoiserRuntime)(denoiser, num_steps, process_group)
        runtime.owner = self  # the model's hooks keep their handle alive, never the other way round
        self.runtimes.append(runtime)
        model = denoiser.module
        names = tuple(plan.region.name for plan in region_plans)
        for plan in region_plans:
            name = _stats_name(denoiser, plan.region, qualify)
            bound = replace(plan, policy=plan.policy.bind(PolicyBinding(denoiser, plan.region, names, plan.forecast)))
            runner = _runner(bound, runtime, self.stats[name], name, static)
            runtime.runners.append(runner)
            for path in runner.watched_paths:
                self._patch(get_submodule(model, path), runner.wrap_watched, path)
            for path in plan.region.modules:
                self._patch(get_submodule(model, path), runner.wrap, path)
        self._patches.append(MethodPatch(model, "forward", runtime.wrap))
        _ENABLED[model] = weakref.ref(self)
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
        """Remove every hook, newest first, and free every cached tensor now; safe to call twice."""
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
                runner.release()
        self.enabled = False

    def reset(self) -> None:
        """Drop every cache now; the next call of each region refreshes."""
        for runtime in self.runtimes:
            runtime.clock.start_generation(check_length=False)

    def __enter__(self) -> CacheHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disable()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<CacheHandle {state}: regions {list(self.regions)}>"


def _runner(plan: RegionPlan, runtime: DenoiserRuntime, stats: RegionStats, name: str, static: bool) -> Runner:
    """A keyed region's runner (it counts its calls as each ends), or a policy-driven one (static or not)."""
    if plan.region.mode != "keyed":
        runner_class = StaticRegionRunner if static else RegionRunner
        return runner_class(plan.region, plan.policy, plan.forecast.factory(), runtime, stats, name)
    runner = KeyedRunner(plan.region, plan.policy, runtime, stats, name)
    runtime.call_ended.append(runner.call_ended)
    return runner


def _stats_name(denoiser: Denoiser, region: Region, qualify: bool) -> str:
    return f"{denoiser.name}/{region.name}" if qualify else region.name


def handle_of(module: nn.Module) -> CacheHandle | None:
    """The handle enabled on ``module``, if any."""
    ref = _ENABLED.get(module)
    return None if ref is None else ref()
