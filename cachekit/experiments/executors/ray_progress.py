"""One progress bar across Ray workers: workers report pipeline calls to a small counter actor.

Each shard attempt reports how many of its pipeline calls are done; the counter keeps the
most any attempt of a shard reached, so a shard retried after its worker died neither
counts twice nor moves the bar back. The driver reads the counts and advances its bar.
"""

from __future__ import annotations

from typing import Any


class ProgressCounter:
    """Pipeline calls done so far, by shard; the state of a Ray actor (no Ray import here)."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def report(self, key: str, count: int) -> None:
        """Shard ``key``'s current attempt has made ``count`` pipeline calls."""
        self.done[key] = max(self.done.get(key, 0), count)

    def counts(self) -> dict[str, int]:
        """Pipeline calls done, by shard."""
        return dict(self.done)


class RemoteBar:
    """A :class:`~cachekit.experiments.executors.ProgressBar` in a worker: reports to a counter actor."""

    def __init__(self, counter: Any, key: str):
        self.counter = counter
        """A handle to the :class:`ProgressCounter` actor."""
        self.key = key
        self.count = 0

    def update(self, count: int) -> None:
        """Report the calls done so far (without waiting for the counter)."""
        self.count += count
        self.counter.report.remote(self.key, self.count)

    def set_description(self, text: str) -> None:
        """The driver's bar shows the settings as they finish."""
