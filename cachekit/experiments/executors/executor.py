"""The executor interface: measure settings with a runner (or replicas of it on workers), yield each when done.

The runner (:class:`~cachekit.experiments.runner.ExperimentRunner`) is a :class:`Measurer`;
executors see it through that interface only, so that they do not import the runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from cachekit.experiments.config import ExperimentConfig
from cachekit.experiments.entries import Setting
from cachekit.experiments.measurement import Measurement
from cachekit.experiments.shard import Shard


class ProgressBar(Protocol):
    """The part of a ``tqdm`` bar the runner uses: one step per pipeline call."""

    def update(self, count: int) -> None:
        """``count`` more pipeline calls are done."""

    def set_description(self, text: str) -> None:
        """Show what runs now (a setting's name)."""


class Measurer(Protocol):
    """What an executor measures settings with: the experiment runner's sampling side."""

    config: ExperimentConfig

    def whole(self, setting: Setting) -> Shard:
        """All of ``setting``'s samples as one shard."""
        ...

    def prepare(self, settings: list[Setting]) -> None:
        """Load the model (once), check the names ``settings`` give against it, and warm up."""

    def measure(self, shard: Shard, bar: ProgressBar) -> Measurement:
        """Sample ``shard`` (and time its setting when it is the first shard), after :meth:`prepare`."""
        ...

    def replica(self) -> Measurer:
        """A copy with nothing loaded, on the same config and clock, to send to a worker."""
        ...


class Executor(Protocol):
    """Runs the settings of an experiment for the runner."""

    def run(
        self, measurer: Measurer, settings: list[Setting], bar: ProgressBar
    ) -> Iterator[tuple[Setting, Measurement]]:
        """Measure every setting of ``settings``; yield each, whole, as soon as it is done, in any order.

        Measurements come from ``measurer`` or its replicas; ``bar`` advances one step per
        pipeline call (:meth:`Shard.work <cachekit.experiments.shard.Shard.work>` of each shard).
        Each setting is yielded once.
        """
        ...
