"""The local executor: every setting in this process, one after the other, in config order."""

from __future__ import annotations

from collections.abc import Iterator

from cachekit.experiments.entries import Setting
from cachekit.experiments.executors.executor import Measurer, ProgressBar
from cachekit.experiments.measurement import Measurement


class LocalExecutor:
    """Loads the model once in this process and measures each setting as one shard, in order."""

    def run(
        self, measurer: Measurer, settings: list[Setting], bar: ProgressBar
    ) -> Iterator[tuple[Setting, Measurement]]:
        """Prepare ``measurer`` (model, names, warm-up), then measure each setting whole."""
        measurer.prepare(settings)
        for setting in settings:
            bar.set_description(setting.name)
            yield setting, measurer.measure(measurer.whole(setting), bar)
