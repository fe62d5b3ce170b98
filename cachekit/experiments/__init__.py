"""Experiments: run the uncached baseline and each cache setting on one model, and compare them.

A layer above the core: the core never imports it. ``cachekit run`` and ``cachekit demo``
use it; its hooks (``cachekit.experiments.hookspecs``, described on the Plugin hooks page)
let plugins load, call and score models and add entry keys of their own. Importing it does
not import matplotlib, diffusers or Ray.
"""

from cachekit.experiments.caller import PipelineCaller, SampleRequest
from cachekit.experiments.config import (
    BASELINE,
    DEMO_EXPERIMENT,
    NOISE_FLOOR,
    ExperimentConfig,
    PlotSpec,
    SamplingSpec,
    TimingSpec,
    load_experiment,
)
from cachekit.experiments.entries import PolicyEntry, Setting
from cachekit.experiments.entry_key import EntryKey
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.executors import Executor, LocalExecutor, RayExecutor
from cachekit.experiments.hooks import named_models
from cachekit.experiments.model_spec import ModelSpec
from cachekit.experiments.results import ExperimentResults
from cachekit.experiments.runner import ExperimentRunner, run_experiment
from cachekit.experiments.scorer import SampleScorer

__all__ = [
    "BASELINE",
    "DEMO_EXPERIMENT",
    "NOISE_FLOOR",
    "EntryKey",
    "ExperimentConfig",
    "ExperimentError",
    "ExperimentResults",
    "ExperimentRunner",
    "Executor",
    "LocalExecutor",
    "ModelSpec",
    "PipelineCaller",
    "PlotSpec",
    "PolicyEntry",
    "RayExecutor",
    "SampleRequest",
    "SampleScorer",
    "SamplingSpec",
    "Setting",
    "TimingSpec",
    "load_experiment",
    "named_models",
    "run_experiment",
]
