"""How a reuse step is served: a strategy per region mode, and registered forecasters."""

from cachekit.reuse.forecaster import FORECASTERS, Forecaster, ForecasterOptions, register_forecaster
from cachekit.reuse.hermite import HermiteForecast
from cachekit.reuse.linear import LinearForecast
from cachekit.reuse.spec import ForecastSpec
from cachekit.reuse.stored import StoredResult
from cachekit.reuse.strategy import OutputReuse, ResidualReuse, ReuseStrategy, make_strategy
from cachekit.reuse.taylor import TaylorForecast
from cachekit.reuse.tree import merge_rows, nbytes, tree_map

__all__ = [
    "FORECASTERS",
    "ForecastSpec",
    "Forecaster",
    "ForecasterOptions",
    "HermiteForecast",
    "LinearForecast",
    "OutputReuse",
    "ResidualReuse",
    "ReuseStrategy",
    "StoredResult",
    "TaylorForecast",
    "make_strategy",
    "merge_rows",
    "nbytes",
    "register_forecaster",
    "tree_map",
]
