"""What the engine keeps for one region: a state per context, dropped at every new generation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cachekit.policies.base import PolicyState
from cachekit.reuse.strategy import ReuseStrategy


@dataclass
class ContextState:
    """One region's state in one context (a CFG branch run as its own call).

    Attributes:
        policy: what the policy declared it keeps (:attr:`~cachekit.policies.base.Policy.state_defaults`).
        strategy: the reuse strategy, which owns every stored result.
        previous_probe: the probe of the previous call, for the drift of the next.
        has_cache: whether a refresh has stored results yet (until then every call refreshes).
    """

    policy: PolicyState
    strategy: ReuseStrategy
    previous_probe: torch.Tensor | None = None
    has_cache: bool = False


class RegionState:
    """All contexts' state of one region; :meth:`reset` drops every cache at once."""

    def __init__(self, new_context: Callable[[], ContextState]):
        self.new_context = new_context
        self.contexts: dict[int, ContextState] = {}

    def context(self, index: int) -> ContextState:
        """The state of context ``index``, created fresh on first use."""
        state = self.contexts.get(index)
        if state is None:
            state = self.contexts[index] = self.new_context()
        return state

    def reset(self) -> None:
        """Forget everything stored: the next call of every context refreshes."""
        self.contexts.clear()

    def nbytes(self) -> int:
        """Bytes of the tensors stored over every context."""
        return sum(state.strategy.nbytes() for state in self.contexts.values())
