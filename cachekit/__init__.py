"""cachekit: training-free feature caching for diffusion models, on any backbone."""

from cachekit.api import cached, disable, enable
from cachekit.clock import StepInfo
from cachekit.config import CacheConfig, DeclaredRegion, load_config
from cachekit.denoiser import Denoiser
from cachekit.engine import CacheHandle, RegionView
from cachekit.errors import (
    AlreadyEnabledError,
    CachekitError,
    ConfigError,
    DenoiserNotFoundError,
    PolicyError,
    RegionNotFoundError,
    did_you_mean,
    listing,
)
from cachekit.experiments import ExperimentError, ModelSpec, SampleScorer
from cachekit.hookspecs import hookimpl, hookspec
from cachekit.modules import get_submodule, isinstance_str
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
    "ExperimentError",
    "ModelSpec",
    "NonUniformPolicy",
    "Policy",
    "PolicyError",
    "Region",
    "RegionIO",
    "RegionNotFoundError",
    "SampleScorer",
    "SimilarityPolicy",
    "StepInfo",
    "TensorIO",
    "TupleIO",
    "UniformPolicy",
    "cached",
    "disable",
    "enable",
    "RegionView",
    "did_you_mean",
    "get_submodule",
    "hookimpl",
    "hookspec",
    "isinstance_str",
    "listing",
    "load_config",
    "register_policy",
]
