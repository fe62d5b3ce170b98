"""Running a keyed region: each module's output is reused for as long as its input is exactly the same.

No policy decides here. Each module of a ``mode="keyed"`` region keeps, per context, the
:class:`~cachekit.engine.input_key.InputKey` of the call it last ran and that call's output.
A call given exactly that input returns the stored output without running; any other call
runs and replaces what is stored. The result is the uncached one by construction (the
module is a function of its input), so a keyed region composes with any other region and
policy, and may sit inside another region's modules: when that region reuses, the keyed
modules are simply not called.

A stored output changed in place after it was returned (its version counter moved) is not
served again: the module runs. Outputs are stored detached, as every stored result is.
A call on fewer batch rows than the stored one (a region around the module refreshing some
rows only) runs and leaves the stored call in place, so the next whole-batch call still finds it.

Stats count denoiser calls, as for every region: a call in which some module ran is a
refresh (``R``), one in which every module called was served is a reuse (``.``); a call
that called none of the modules (they sit in a region that reused) is not counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cachekit.clock import StepInfo
from cachekit.engine.input_key import InputKey, InputKeys, version
from cachekit.engine.runner import StepSource
from cachekit.engine.stats import RegionStats
from cachekit.errors import CachekitWarning
from cachekit.policies.base import Policy
from cachekit.region import Region
from cachekit.reuse.tree import nbytes, tensors, tree_map


@dataclass(frozen=True)
class StoredCall:
    """One module's last computed call: its input key, its (detached) output and the output's versions."""

    key: InputKey
    output: Any
    versions: tuple[int | None, ...]

    @classmethod
    def of(cls, key: InputKey, output: Any) -> StoredCall:
        """What is kept of a call given ``key`` that returned ``output``."""
        detached = tree_map(lambda tensor, _: tensor.detach(), output, None)
        return cls(key, detached, tuple(version(tensor) for tensor in tensors(detached)))

    def intact(self) -> bool:
        """Whether no stored output tensor was changed in place since it was stored."""
        now = (version(tensor) for tensor in tensors(self.output))
        return all(before == after for before, after in zip(self.versions, now, strict=True))

    def served(self) -> Any:
        """The stored output; inference tensors (no version counter to watch) as copies."""
        return tree_map(lambda tensor, _: tensor.clone() if tensor.is_inference() else tensor, self.output, None)


def _rows(inputs: Sequence[torch.Tensor]) -> int:
    """Batch rows of a call given ``inputs``: the first dimension of the first (1 without one)."""
    first = inputs[0] if inputs else None
    return len(first) if first is not None and first.dim() else 1


class KeyedState:
    """A keyed region's stored calls: context -> module path -> :class:`StoredCall`."""

    def __init__(self) -> None:
        self.contexts: dict[int, dict[str, StoredCall]] = {}

    def context(self, index: int) -> dict[str, StoredCall]:
        """The stored calls of context ``index``, empty on first use."""
        return self.contexts.setdefault(index, {})

    def reset(self) -> None:
        """Forget every stored call: each module runs at its next call."""
        self.contexts.clear()

    def nbytes(self) -> int:
        """Bytes of the stored inputs and outputs over every context (shared snapshots counted once)."""
        calls = [call for stored in self.contexts.values() for call in stored.values()]
        return nbytes(*(call.key.tensors for call in calls), *(call.output for call in calls))


class KeyedRunner:
    """Runs a ``mode="keyed"`` region: serves each module's stored output while its input is unchanged."""

    watched_paths: tuple[str, ...] = ()
    """Keyed regions watch no module (no probe)."""

    def __init__(self, region: Region, policy: Policy, runtime: StepSource, stats: RegionStats, stats_name: str):
        self.region = region
        self.policy = policy
        """The config's policy for this region, shown in views; a keyed region follows none."""
        self.runtime = runtime
        self.stats = stats
        self.stats_name = stats_name
        self.state = KeyedState()
        self.keys = InputKeys()
        self.step: StepInfo | None = None
        """The denoiser call whose module calls are being counted (``None`` between calls)."""
        self.rows = 0
        self.computed = False
        self.reached = False
        self.warned = False

    def reset(self) -> None:
        """Drop every stored call and the hit map of the generation."""
        self.release()
        self.reached = False
        self.stats.new_generation()

    def release(self) -> None:
        """Drop every tensor held: stored calls and what is known of the current call's tensors."""
        self.state.reset()
        self.keys.forget()
        self.step = None

    def check_ran(self, calls: int) -> None:
        """Warn once when a generation of ``calls`` denoiser calls called none of the region's modules."""
        if self.reached or self.warned:
            return
        self.warned = True
        warnings.warn(
            f"region {self.stats_name!r} did not run in a generation of {calls} denoiser calls: none of its "
            f"{len(self.region.modules)} modules was called, so nothing was stored",
            CachekitWarning,
            stacklevel=2,
        )

    def call_ended(self) -> None:
        """After each denoiser call: count it, and forget its tensors."""
        step = self.step
        if step is not None:
            self.stats.record(step.index, step.context, self.rows if self.computed else 0, self.rows)
        self.keys.forget()
        self.step = None

    @torch.compiler.disable
    def _lookup(self, step: StepInfo, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StoredCall | None:
        """The stored call of ``path`` if this call's input is exactly its input, else ``None``."""
        self.reached = True
        if self.step is not step:
            self.step, self.computed = step, False
            self.rows = _rows(tensors((args, kwargs)))
        stored = self.state.context(step.context).get(path)
        if stored is None or not stored.intact() or not self.keys.matches(stored.key, args, kwargs):
            return None
        return stored

    @torch.compiler.disable
    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> InputKey:
        """The key of a call about to run, taken before it runs."""
        self.computed = True
        return self.keys.key(args, kwargs)

    @torch.compiler.disable
    def _store(self, step: StepInfo, path: str, key: InputKey, output: Any) -> None:
        stored = self.state.context(step.context)
        kept = stored.get(path)
        if kept is None or not kept.intact() or _rows(key.tensors) >= _rows(kept.key.tensors):
            stored[path] = StoredCall.of(key, output)

    def wrap(self, path: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """Forward of the region's module at ``path``."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            step = self.runtime.current_step
            if step is None:
                return original(*args, **kwargs)
            stored = self._lookup(step, path, args, kwargs)
            if stored is not None:
                return stored.served()
            key = self._key(args, kwargs)
            output = original(*args, **kwargs)
            self._store(step, path, key, output)
            return output

        return forward
