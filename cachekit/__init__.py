"""cachekit: training-free feature caching for diffusion models, on any backbone.

Users need :func:`enable`, :func:`disable`, :func:`cached` and the config models. Plugin
authors find every name they need here too: the hook markers, :class:`Denoiser`,
:class:`Region` and its IO objects, :class:`Policy` with its :class:`PolicyState`,
:class:`Probe`, :class:`Forecaster`, their ``register_*`` functions, the errors and the
message helpers.

Nothing is imported until it is used: ``import cachekit`` costs no torch and no plugin, and
each name's module is imported on its first use (:mod:`cachekit.lazy`). The imports under
``TYPE_CHECKING`` below are the one list of names and the modules that define them.
"""

from typing import TYPE_CHECKING

from cachekit.lazy import attach

if TYPE_CHECKING:
    from cachekit.api import cached, disable, enable
    from cachekit.clock import StepInfo
    from cachekit.config import CacheConfig, DeclaredRegion, load_config
    from cachekit.denoiser import Denoiser
    from cachekit.engine.handle import CacheHandle, RegionView
    from cachekit.engine.probes import Probe, register_probe
    from cachekit.engine.stats import CacheStats, RegionStats
    from cachekit.errors import (
        AlreadyEnabledError,
        CachekitError,
        CachekitWarning,
        ConcurrentUseError,
        ConfigError,
        DenoiserNotFoundError,
        FewStepsWarning,
        PolicyError,
        RankMismatchError,
        RegionNotFoundError,
        UnsupportedCombinationError,
        did_you_mean,
        listing,
    )
    from cachekit.experiments import EntryKey, ExperimentError, ModelSpec, PipelineCaller, SampleRequest, SampleScorer
    from cachekit.experiments.calibrate import CalibrationResult, calibrate
    from cachekit.hookspecs import hookimpl, hookspec
    from cachekit.modules import get_submodule, isinstance_str
    from cachekit.plugin_manager import load_plugins, register_plugin, unregister_plugin
    from cachekit.policies import (
        CalibratedPolicy,
        NonUniformPolicy,
        Policy,
        PolicyBinding,
        PolicyState,
        SchedulePolicy,
        SimilarityPolicy,
        UniformPolicy,
        register_policy,
    )
    from cachekit.region import Region, RegionIO, TensorIO, TupleIO
    from cachekit.reuse import (
        Forecaster,
        ForecasterOptions,
        ForecastSpec,
        HermiteForecast,
        TaylorForecast,
        merge_rows,
        nbytes,
        register_forecaster,
        tree_map,
    )
    from cachekit.text_kv import (
        TEXT_KV,
        cross_attention_paths,
        joint_attention_refusal,
        receives_context,
        text_kv_region,
    )

__getattr__, __dir__ = attach(__name__, __file__)

__version__ = "0.1.0"

__all__ = [
    "AlreadyEnabledError",
    "CacheConfig",
    "CacheHandle",
    "CacheStats",
    "CalibratedPolicy",
    "CalibrationResult",
    "CachekitError",
    "CachekitWarning",
    "ConcurrentUseError",
    "ConfigError",
    "DeclaredRegion",
    "Denoiser",
    "DenoiserNotFoundError",
    "EntryKey",
    "ExperimentError",
    "FewStepsWarning",
    "HermiteForecast",
    "ForecastSpec",
    "Forecaster",
    "ForecasterOptions",
    "ModelSpec",
    "NonUniformPolicy",
    "PipelineCaller",
    "Policy",
    "PolicyBinding",
    "PolicyError",
    "PolicyState",
    "Probe",
    "RankMismatchError",
    "Region",
    "RegionIO",
    "RegionNotFoundError",
    "RegionStats",
    "RegionView",
    "SampleRequest",
    "SampleScorer",
    "SchedulePolicy",
    "SimilarityPolicy",
    "StepInfo",
    "TEXT_KV",
    "TaylorForecast",
    "TensorIO",
    "TupleIO",
    "UniformPolicy",
    "UnsupportedCombinationError",
    "cached",
    "calibrate",
    "cross_attention_paths",
    "did_you_mean",
    "disable",
    "enable",
    "get_submodule",
    "hookimpl",
    "hookspec",
    "isinstance_str",
    "joint_attention_refusal",
    "listing",
    "load_config",
    "load_plugins",
    "merge_rows",
    "nbytes",
    "receives_context",
    "register_forecaster",
    "register_plugin",
    "register_policy",
    "register_probe",
    "text_kv_region",
    "tree_map",
    "unregister_plugin",
]
