"""A shard of a setting: consecutive batches of its seeds, the unit of work an executor hands a worker.

A local run measures each setting as one shard. An executor that spreads a sweep over
workers may split a setting into several (:meth:`Shard.split`), on the setting's own batch
boundaries, so that every pipeline call samples the same seeds as in a local run and the
merged samples are the same. The first shard of a setting also times it: the interleaved
rounds of :mod:`cachekit.experiments.speedup` run on its first batch, in the one worker
that runs the shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cachekit.experiments.entries import Setting


@dataclass(frozen=True)
class Shard:
    """Samples ``start`` onwards of one setting's seeds, ``seeds`` of them."""

    setting: Setting
    index: int
    """Position among the setting's shards; shard 0 times the setting."""
    start: int
    """Index of the first sample in the setting's seeds (sample i uses prompt or label i)."""
    seeds: tuple[int, ...]

    @property
    def timed(self) -> bool:
        """Whether this shard times the setting (its first shard)."""
        return self.index == 0

    def work(self, batch_size: int, repeats: int) -> int:
        """Pipeline calls this shard makes: its batches, and the timing rounds when :attr:`timed`.

        The rounds are ``repeats - 1`` more cached batches and, for a cached setting, ``repeats``
        uncached ones (an uncached setting times its own first batch).
        """
        rounds = repeats - 1 + (repeats if self.setting.cache is not None else 0) if self.timed else 0
        return math.ceil(len(self.seeds) / batch_size) + rounds

    def split(self, batch_size: int, parts: int) -> list[Shard]:
        """This shard (a whole setting) as at most ``parts`` shards of whole batches, as even as batches allow."""
        batches = math.ceil(len(self.seeds) / batch_size)
        step = math.ceil(batches / max(1, min(parts, batches))) * batch_size
        return [
            Shard(self.setting, index, self.start + first, self.seeds[first : first + step])
            for index, first in enumerate(range(0, len(self.seeds), step))
        ]
