"""Recording uncached generations: each selected region's result and probe drift, step by step.

The target is enabled with :class:`~cachekit.calibration.recording_policy.RecordingPolicy`
(every call refreshes, so the output is the uncached one), and each region's exit gets a
forward hook that turns its output into the *true region result* the reuse strategy would
store (the exit output, or ``exit - entry`` in residual mode), cut to a fixed
:class:`~cachekit.calibration.subsample.Subsample`. When a context's generation is complete
(a new generation starts, or recording stops) the trajectory, ``(steps, rows, size)``, and the
drift of each step, ``(steps, rows)``, go to ``on_generation`` and are dropped: memory holds
one generation per region and context. A second-order solver's second call of a step is not
recorded: the step's result is its first call's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from cachekit.api import ConfigSource, enable
from cachekit.calibration.recording_policy import RecordingPolicy
from cachekit.calibration.subsample import Subsample
from cachekit.config import load_config
from cachekit.engine.handle import CacheHandle, RegionView
from cachekit.errors import CachekitError
from cachekit.modules import get_submodule
from cachekit.reuse.stored import StoredResult
from cachekit.reuse.strategy import make_strategy

Trajectory = tuple[torch.Tensor, torch.Tensor]
"""One context's generation of one region: results ``(steps, rows, size)`` and drifts ``(steps, rows)``."""


@dataclass
class _Context:
    generation: int = -1
    results: dict[int, torch.Tensor] = field(default_factory=dict)
    drifts: dict[int, torch.Tensor] = field(default_factory=dict)


class RegionRecording:
    """Records one installed region through hooks on its entry and exit modules."""

    def __init__(self, view: RegionView, subsample: Subsample, on_generation: Callable[[str, Trajectory], None]):
        assert isinstance(view.policy, RecordingPolicy)
        self.name = view.name
        self.view = view
        self.policy = view.policy
        self.subsample = subsample
        self.on_generation = on_generation
        self.strategy = make_strategy(view.region, StoredResult)
        self.entry_inputs: tuple[torch.Tensor, ...] = ()
        self.contexts: dict[int, _Context] = {}

    def install(self) -> list[Any]:
        """Hook the entry (its inputs, for residual mode) and the exit; returns the hook handles."""
        model, region = self.view.denoiser.module, self.view.region
        handles = [get_submodule(model, region.exit).register_forward_hook(self._exit_hook, with_kwargs=True)]
        if self.strategy.needs_entry_inputs:
            entry = get_submodule(model, region.entry)
            handles.append(entry.register_forward_pre_hook(self._entry_hook, with_kwargs=True))
        return handles

    def _entry_hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.entry_inputs = self.view.region.io.read_inputs(args, kwargs)

    def _exit_hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        step, drift = self.policy.take()
        if step is None or step.call:  # outside a denoiser call, or a second-order solver's second call
            return
        value = self.subsample(self.strategy.exit_value(self.entry_inputs, output))
        context = self.contexts.setdefault(step.context, _Context())
        if context.results and (step.generation != context.generation or step.index <= max(context.results)):
            self._finish(context)
        context.generation = step.generation
        rows = value.shape[0]
        drift_rows = torch.full((rows,), math.nan) if drift is None else torch.as_tensor(drift, dtype=torch.float32)
        context.results[step.index] = value
        context.drifts[step.index] = drift_rows.reshape(-1).expand(rows).clone()

    def _finish(self, context: _Context) -> None:
        steps = sorted(context.results)
        if steps != list(range(len(steps))):
            missing = sorted(set(range(steps[-1] + 1)) - set(steps))
            raise CachekitError(f"calibration: region {self.name!r} did not run at steps {missing} of a generation")
        results = torch.stack([context.results[step] for step in steps])
        drifts = torch.stack([context.drifts[step] for step in steps])
        context.results, context.drifts = {}, {}
        self.on_generation(self.name, (results, drifts))

    def finish(self) -> None:
        """Hand on every context's generation still in progress."""
        for context in self.contexts.values():
            if context.results:
                self._finish(context)


class Recorder:
    """Uncached generations of ``target`` with every region ``cache`` selects recorded.

    ``cache`` selects regions as in :func:`cachekit.enable` (its policy is ignored);
    ``probe`` names the probe whose drift is recorded; each completed generation of a region
    and context goes to ``on_generation(region_name, trajectory)``.
    """

    def __init__(
        self,
        target: Any,
        cache: ConfigSource,
        on_generation: Callable[[str, Trajectory], None],
        sample_size: int = 1024,
        seed: int = 0,
        probe: str = "entry_input",
    ):
        settings = load_config(cache)
        self.target = target
        self.config = settings.model_copy(
            update={"policy": RecordingPolicy(probe=probe), "region_policies": {}, "denoiser_policies": {}}
        )
        self.on_generation = on_generation
        self.sample_size = sample_size
        self.seed = seed

    @contextmanager
    def recording(self) -> Iterator[CacheHandle]:
        """Record every generation run inside the block; the target is left as it was after it."""
        handle = enable(self.target, self.config)
        recordings = [
            RegionRecording(view, Subsample(self.sample_size, self.seed + index), self.on_generation)
            for index, view in enumerate(handle.views.values())
        ]
        hooks = [hook for recording in recordings for hook in recording.install()]
        try:
            yield handle
            for recording in recordings:
                recording.finish()
        finally:
            for hook in hooks:
                hook.remove()
            handle.disable()
