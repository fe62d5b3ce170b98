"""cachekit: training-free feature caching for diffusion models, on any backbone."""

from cachekit.api import cached, disable, enable
from cachekit.clock import StepInfo
from cachekit.config import CacheConfig, DeclaredRegion, load_config
from cachekit.denoiser import Denoiser
from cachekit.engine import CacheHandle
from cachekit.errors import (
    AlreadyEnabledError,
    CachekitError,
    ConfigError,
    DenoiserNotFoundError,
    PolicyError,
    RegionNotFoundError,
)
from cachekit.plugin_manager import hookimpl
from cachekit.policies import NonUniformPolicy, Policy, SimilarityPolicy, UniformPolicy, register_policy
from cachekit.region import Region, RegionIO, TensorIO, TupleIO

__version__ = "0.1.0"

__all__ = [
    "AlreadyEnabledError",
    "CacheConfig",
    "CacheHandle",
    "CachekitError",
    "ConfigError",
    "DeclaredRegion",
    "Denoiser",
    "DenoiserNotFoundError",
    "NonUniformPolicy",
    "Policy",
    "PolicyError",
    "Region",
    "RegionIO",
    "RegionNotFoundError",
    "SimilarityPolicy",
    "StepInfo",
    "TensorIO",
    "TupleIO",
    "UniformPolicy",
    "cached",
    "disable",
    "enable",
    "hookimpl",
    "load_config",
    "register_policy",
]
