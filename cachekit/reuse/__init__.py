"""How a reuse step is served: a strategy per region mode, and registered forecasters."""

from cachekit.reuse.forecaster import FORECASTERS, Forecaster, register_forecaster
from cachekit.reuse.linear import LinearForecast
from cachekit.reuse.stored import StoredResult
from cachekit.reuse.strategy import OutputReuse, ResidualReuse, ReuseStrategy, make_strategy
from cachekit.reuse.tree import merge_rows, nbytes, tree_map

__all__ = [
    "FORECASTERS",
    "Forecaster",
    "LinearForecast",
    "OutputReuse",
    "ResidualReuse",
    "ReuseStrategy",
    "StoredResult",
    "make_strategy",
    "merge_rows",
    "nbytes",
    "register_forecaster",
    "tree_map",
]
