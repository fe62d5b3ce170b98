"""A Ray worker of a sweep: a replica of the driver's runner, its model loaded once.

The class is the state of a Ray actor (:class:`~cachekit.experiments.executors.RayExecutor`
wraps it with ``ray.remote``); nothing here imports Ray. A restarted worker (its process
died) runs ``__init__`` again and loads the model again on its first shard.
"""

from __future__ import annotations

import torch

from cachekit.experiments.entries import Setting
from cachekit.experiments.executors.executor import Measurer
from cachekit.experiments.executors.ray_progress import RemoteBar
from cachekit.experiments.measurement import Measurement
from cachekit.experiments.shard import Shard


class SweepWorker:
    """Measures shards of a sweep's settings with its own replica of the driver's runner."""

    def __init__(self, measurer: Measurer, settings: list[Setting]):
        self.measurer = measurer
        self.settings = settings
        """Every setting of the sweep: their names are checked against the model before the first shard."""
        self._prepared = False

    def measure(self, shard: Shard, bar: RemoteBar) -> Measurement:
        """Measure ``shard`` (loading the model first, once), reporting progress to ``bar``.

        The bar comes with each call rather than to ``__init__``: Ray warns about restartable
        actors whose constructor holds an actor handle."""
        if not self._prepared:
            torch.set_num_threads(self.measurer.config.timing.threads)  # the process is this worker's alone
            self.measurer.prepare(self.settings)
            self._prepared = True
        return self.measurer.measure(shard, bar)
