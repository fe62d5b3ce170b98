"""How a region serves its reuse steps: one small strategy per reuse mode.

A strategy is made for one region in one context and lives for one generation. On a
refresh the engine hands it each module's output (:meth:`ReuseStrategy.refreshed`); it
keeps what its mode needs, each stored result in a :class:`~cachekit.reuse.forecaster.Forecaster`.
On a reuse step the engine asks it what each module returns (:meth:`ReuseStrategy.served`).
Inner modules (neither entry nor exit) behave the same in both modes: ``passthrough`` hands
each module's input on, ``replay`` serves its stored output. Only what reaches code that
runs is forecast: the exit's value, and the replayed outputs that ``forecasts(path)`` says a
live module reads (:mod:`cachekit.engine.readers` finds them); the others are served as stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from cachekit.region import Region
from cachekit.reuse.forecaster import Forecaster, ForecasterFactory
from cachekit.reuse.stored import StoredResult
from cachekit.reuse.tree import tree_map


class ReuseStrategy(ABC):
    """What one region keeps between refreshes in one context, and what its reuse steps return."""

    needs_entry_inputs = False
    """True when the strategy reads the entry's input tensors (residual mode)."""

    def __init__(
        self, region: Region, forecaster: ForecasterFactory, forecasts: Callable[[str], bool] = lambda path: True
    ):
        self.region = region
        self.exit = region.exit
        self.replays = region.inner == "replay"
        self.forecaster = forecaster
        self.forecasts = forecasts
        """Whether a replayed inner module's output is forecast (a live module reads it) or served as stored."""
        self.stored: dict[str, Forecaster] = {}

    def refreshed(
        self, path: str, step: int, entry_inputs: tuple[torch.Tensor, ...], output: Any, rows: torch.Tensor | None
    ) -> None:
        """Module ``path`` ran at ``step`` and returned ``output`` (for the ``rows`` that refreshed, or all).

        What is stored is detached from autograd: a reuse step serves it as a constant, so a
        backward through a reuse step's output never reaches back into the refresh step's graph.
        """
        if path == self.exit:
            self._store("exit", step, self.exit_value(entry_inputs, output), rows)
        elif self.replays:
            self._store(path, step, output, rows)

    def served(
        self,
        path: str,
        step: int,
        entry_inputs: tuple[torch.Tensor, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """What module ``path`` returns at reuse step ``step``, for every batch row."""
        if path == self.exit:
            return self.exit_output(entry_inputs, self.stored["exit"].serve(step))
        if self.replays:
            return self.stored[path].serve(step)
        io = self.region.io
        return io.build_output(io.read_inputs(args, kwargs))

    def nbytes(self) -> int:
        """Bytes of every tensor stored."""
        return sum(forecaster.nbytes() for forecaster in self.stored.values())

    def nbytes_by_forecaster(self) -> Counter[str]:
        """Bytes stored, by the class name of the forecaster that keeps them."""
        held: Counter[str] = Counter()
        for forecaster in self.stored.values():
            held[type(forecaster).__name__] += forecaster.nbytes()
        return held

    def _store(self, key: str, step: int, value: Any, rows: torch.Tensor | None) -> None:
        forecaster = self.stored.get(key)
        plain = key != "exit" and not self.forecasts(key)
        if plain and not isinstance(forecaster, StoredResult):
            forecaster = self.stored[key] = StoredResult()  # nothing live reads it: keep one result
        elif forecaster is None:
            forecaster = self.stored[key] = self.forecaster()
        forecaster.record(step, tree_map(lambda tensor, _: tensor.detach(), value, None), rows)

    @abstractmethod
    def exit_value(self, entry_inputs: tuple[torch.Tensor, ...], output: Any) -> Any:
        """What is stored of the exit's ``output`` on a refresh."""

    @abstractmethod
    def exit_output(self, entry_inputs: tuple[torch.Tensor, ...], stored: Any) -> Any:
        """The exit's return value on a reuse step, from what is served of the stored value."""


class OutputReuse(ReuseStrategy):
    """``mode="output"``: the exit returns its stored output (DeepCache)."""

    def exit_value(self, entry_inputs: tuple[torch.Tensor, ...], output: Any) -> Any:
        return output

    def exit_output(self, entry_inputs: tuple[torch.Tensor, ...], stored: Any) -> Any:
        return stored


class ResidualReuse(ReuseStrategy):
    """``mode="residual"``: the exit returns this step's entry input plus the stored ``exit - entry``.

    A stream the exit returns as ``None`` (SD3's last block) stays ``None``.
    """

    needs_entry_inputs = True

    def exit_value(self, entry_inputs: tuple[torch.Tensor, ...], output: Any) -> Any:
        exits = self.region.io.read_outputs(output)
        return tuple(None if out is None else out - inp for out, inp in zip(exits, entry_inputs, strict=False))

    def exit_output(self, entry_inputs: tuple[torch.Tensor, ...], stored: Any) -> Any:
        pairs = zip(entry_inputs, stored, strict=False)
        return self.region.io.build_output(tuple(None if res is None else inp + res for inp, res in pairs))


STRATEGIES: dict[str, type[ReuseStrategy]] = {"output": OutputReuse, "residual": ResidualReuse}
"""The strategy of each region mode."""


def make_strategy(
    region: Region, forecaster: ForecasterFactory, forecasts: Callable[[str], bool] = lambda path: True
) -> ReuseStrategy:
    """The strategy of ``region``'s mode, storing the results that ``forecasts`` in ``forecaster`` instances."""
    return STRATEGIES[region.mode](region, forecaster, forecasts)
