"""An extra key of an experiment's policies entries, contributed by a plugin.

A backbone's own vocabulary belongs to its plugin: the UNet plugin adds ``branch: k``
(region ``branch{k}``, DeepCache's skip branch ``k``) through the
``cachekit_experiment_entry_keys`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryKey:
    """What one entry key accepts and which :class:`~cachekit.config.CacheConfig` keys it sets.

    Example, the UNet's ``branch``::

        EntryKey(NonNegativeInt, lambda k: {"regions": [f"branch{k}"]})
    """

    type: Any
    """The pydantic type each value is validated as (fixed or swept in a ``grid``), e.g. ``NonNegativeInt``;
    errors name the entry and the key (``policies.0.branch``)."""
    to_config: Callable[[Any], Mapping[str, Any]]
    """A validated value -> the ``CacheConfig`` keys it sets. ``regions`` add to the entry's own
    regions (and name the setting, ``@branch0``); any other key (``denoisers``, ...) must be set by
    nothing else of the entry, and names the setting as ``key=value``. ``policy`` and ``forecast``
    are the entry's own."""
