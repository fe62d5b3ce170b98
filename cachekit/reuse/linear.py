"""``forecast: linear``: the last two refreshes extrapolated, ``taylor`` of order 1.

With results ``f0`` at step ``s0`` and ``f1`` at step ``s1``, step ``s`` is served
``f1 + (s - s1) / (s1 - s0) * (f1 - f0)`` (one ``torch.lerp``). Until a row has refreshed
twice it is served ``f1`` as stored; rows refreshed at different steps each use their own.
"""

from __future__ import annotations

from cachekit.reuse.forecaster import ForecasterOptions, register_forecaster
from cachekit.reuse.taylor import TaylorForecast


class LinearForecast(TaylorForecast):
    """:class:`~cachekit.reuse.taylor.TaylorForecast` of order 1, with no parameters."""

    Options = ForecasterOptions

    def __init__(self) -> None:
        super().__init__(order=1)


register_forecaster("linear", LinearForecast)
