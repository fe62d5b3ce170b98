"""Running one region: decide at its entry, then refresh or reuse through each of its modules.

At the entry module the policy decides, per batch row, from the drift of the probe it names.
When every row agrees (the common case) the whole batch refreshes or reuses. When rows
disagree the region runs, the refreshed rows' results are stored for them alone, and the
other rows are served what the reuse strategy serves them, so a row gets exactly what it
would get in a batch of its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from cachekit.clock import StepInfo
from cachekit.denoiser import Denoiser
from cachekit.engine.probes import PROBES, Probe, drift_of, row_drift_terms
from cachekit.engine.ranks import RankGroup
from cachekit.engine.readers import LiveReaders
from cachekit.engine.state import ContextState, RegionState
from cachekit.engine.stats import RegionStats
from cachekit.errors import CachekitWarning
from cachekit.modules import get_submodule
from cachekit.policies.base import Policy
from cachekit.region import Region
from cachekit.reuse.forecaster import ForecasterFactory
from cachekit.reuse.strategy import STRATEGIES, make_strategy
from cachekit.reuse.tree import merge_rows, put_rows, take_rows


class StepSource(Protocol):
    """Where a runner reads the step of the denoiser call in progress (the denoiser's runtime)."""

    denoiser: Denoiser
    current_step: StepInfo | None
    ranks: RankGroup | None
    """The ranks that sum each probe's drift terms so they decide alike (``None``: decide alone)."""


@dataclass
class Decision:
    """The decision of one region for one denoiser call.

    ``rows`` is ``None`` when every batch row decided alike (then ``refresh`` holds for all),
    else a bool per row, true where the row refreshes.
    """

    step: StepInfo
    state: ContextState
    refresh: bool
    rows: torch.Tensor | None
    entry_inputs: tuple[torch.Tensor, ...]


def _rows(decision: bool | torch.Tensor) -> bool | torch.Tensor:
    """A policy's answer as one bool, or a bool per row when rows disagree."""
    if not isinstance(decision, torch.Tensor):
        return bool(decision)
    rows = decision.detach().reshape(-1).bool().cpu()
    if bool(rows.all()):
        return True
    return rows if bool(rows.any()) else False


class RegionRunner:
    """Runs one region: decides at its entry, then stores or reuses through its modules."""

    def __init__(
        self,
        region: Region,
        policy: Policy,
        forecaster: ForecasterFactory,
        runtime: StepSource,
        stats: RegionStats,
        stats_name: str,
    ):
        self.region = region
        self.policy = policy
        self.runtime = runtime
        self.stats = stats
        self.stats_name = stats_name
        probe_name = policy.probe_name()
        self.probe: Probe | None = None if probe_name is None else PROBES.get(probe_name)
        self.watched_paths = self.probe.watched_modules(region) if self.probe else ()
        self.watched: dict[str, torch.Tensor] = {}
        model = runtime.denoiser.module
        self.readers = (  # which replayed outputs live modules read, so that only those are forecast
            LiveReaders(model, [get_submodule(model, path) for path in region.modules])
            if region.inner == "replay" and len(region.modules) > 1
            else None
        )
        forecasts = self.readers.forecasts if self.readers else lambda path: True
        self.state = RegionState(
            lambda: ContextState(policy=policy.new_state(), strategy=make_strategy(region, forecaster, forecasts))
        )
        self.needs_entry_inputs = self.probe is not None or STRATEGIES[region.mode].needs_entry_inputs
        self.decision: Decision | None = None
        self.warned = False
        self.reached = False
        """Whether the entry was called in this generation (even by a call that then failed)."""

    def reset(self) -> None:
        """Drop every context's cache and the hit map of the generation."""
        self.release()
        self.reached = False
        self.stats.new_generation()

    def check_ran(self, calls: int) -> None:
        """Warn once when a generation of ``calls`` denoiser calls never reached this region's entry."""
        if self.reached or self.warned:
            return
        self.warned = True
        warnings.warn(
            f"region {self.stats_name!r} did not run in a generation of {calls} denoiser calls: its entry "
            f"{self.region.entry!r} is never called by the model's forward, so nothing was cached; "
            "name modules the forward calls",
            CachekitWarning,
            stacklevel=2,
        )

    def note_held(self) -> None:
        """Note in the stats the bytes the last call's context keeps, when that call refreshed.

        Called where compiled code never runs (at the next decision, and before the stored
        results are dropped), so that counting storage bytes adds no graph break to a compiled
        forward; a reuse call stores nothing, so only a refresh changes the figure.
        """
        decision = self.decision
        if decision is not None and decision.refresh and decision.state.has_cache:
            self.stats.record_held(decision.step.context, decision.state.strategy.nbytes_by_forecaster())

    def release(self) -> None:
        """Drop every tensor held: stored results, the last decision's inputs, watched inputs."""
        self.note_held()
        self.state.reset()
        self.decision = None
        self.watched.clear()
        if self.readers:
            self.readers.finish()

    @torch.compiler.disable
    def decide(self, step: StepInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decision:
        """Ask the policy at the entry module (always refresh when nothing is stored)."""
        if self.readers:
            self.readers.finish()  # a watched refresh ends where the next call begins
        self.note_held()
        state = self.state.context(step.context)
        entry_inputs = self.region.io.read_inputs(args, kwargs) if self.needs_entry_inputs else ()
        if self.probe is not None:
            self._observe(state, entry_inputs)
        wanted = _rows(self.policy.should_refresh(step, state.policy))
        wanted = wanted if state.has_cache else True
        self.policy.update(state.policy, step, wanted)
        rows = wanted if isinstance(wanted, torch.Tensor) else None
        batch = len(entry_inputs[0]) if entry_inputs and entry_inputs[0].dim() else 1
        computed = int(rows.sum()) if rows is not None else batch if wanted else 0
        self.stats.record(step.index, step.context, computed, len(rows) if rows is not None else batch)
        self.decision = Decision(step, state, rows is not None or bool(wanted), rows, entry_inputs)
        if rows is not None or not wanted:
            state.strategy.prepare(step.index)
        return self.decision

    def _observe(self, state: ContextState, entry_inputs: tuple[torch.Tensor, ...]) -> None:
        assert self.probe is not None
        probe = self.probe.measure(entry_inputs, self.watched).detach()
        previous = state.previous_probe
        if previous is not None and previous.shape == probe.shape:
            terms = row_drift_terms(probe, previous)
            ranks = self.runtime.ranks
            self.policy.observe(state.policy, drift_of(terms if ranks is None else ranks.sum(terms)))
        state.previous_probe = probe

    def _partial(
        self,
        original: Callable[..., Any],
        decision: Decision,
        path: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Some rows refresh: they are computed (alone, when rows are independent); the others are
        served what the strategy serves them, exactly what they would get in a batch of their own."""
        assert decision.rows is not None
        served = decision.state.strategy.served(path, decision.step.index, decision.entry_inputs, args, kwargs)
        if not self.region.rows_independent:
            return merge_rows(decision.rows, original(*args, **kwargs), served)
        index = decision.rows.nonzero().flatten()
        rows = len(decision.rows)
        part = original(*take_rows(args, index, rows), **take_rows(kwargs, index, rows))
        return put_rows(served, part, index)

    def wrap_watched(self, path: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of a module whose input a probe reads: record it, then run as usual."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.runtime.current_step is not None:
                self.watched[path] = self.region.io.read_inputs(args, kwargs)[0]
            return original(*args, **kwargs)

        return forward

    def current(self, is_entry: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Decision | None:
        """The decision a module call follows (taken at the entry), or ``None``: run as usual."""
        step = self.runtime.current_step
        if step is None:
            return None
        if is_entry:
            self.reached = True
            return self.decide(step, args, kwargs)
        decision = self.decision
        return decision if decision is not None and decision.step is step else None

    def wrap(self, path: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of the region's module at ``path``."""
        is_entry, is_exit = path == self.region.entry, path == self.region.exit
        stores = is_exit or self.region.inner == "replay"  # passthrough inner modules keep nothing

        def forward(*args: Any, **kwargs: Any) -> Any:
            decision = self.current(is_entry, args, kwargs)
            if decision is None:
                return original(*args, **kwargs)
            step = decision.step
            strategy = decision.state.strategy
            if not decision.refresh:
                return strategy.served(path, step.index, decision.entry_inputs, args, kwargs)
            output = (
                original(*args, **kwargs)
                if decision.rows is None
                else self._partial(original, decision, path, args, kwargs)
            )
            if stores:
                strategy.refreshed(path, step.index, decision.entry_inputs, output, decision.rows)
            if self.readers:
                if is_entry:
                    self.readers.start()
                self.readers.returned(path, output)  # the exit's too: what reads it is no inner output's reader
            if is_exit:
                decision.state.has_cache = True
            return output

        return forward
