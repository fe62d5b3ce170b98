"""One implementation of every cachekit hook: the examples of the Plugin hooks page.

The plugin adapts a made-up library, ``mylib``: a ``MyPipeline`` holding a ``transformer``
and a ``scheduler``, a ``MyTransformer`` whose ``blocks`` are a ``ModuleList``, a
``MyScheduler`` whose steps take two calls, and ``MyAttention`` layers other models use. It
recognises them by class name, so importing the plugin never imports mylib. Each ``--8<--``
pair marks the part a section shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt
from torch import nn

from cachekit import (
    Denoiser,
    EntryKey,
    Forecaster,
    ModelSpec,
    Policy,
    PolicyState,
    Probe,
    Region,
    RegionNotFoundError,
    SampleRequest,
    StepInfo,
    hookimpl,
    isinstance_str,
    merge_rows,
    nbytes,
    tree_map,
)


# --8<-- [start:cachekit_find_denoisers]
@hookimpl
def cachekit_find_denoisers(pipeline: Any) -> list[Denoiser] | None:
    if not isinstance_str(pipeline, "MyPipeline"):
        return None  # not a mylib pipeline: another plugin may know it
    return [Denoiser("transformer", pipeline.transformer, pipeline.scheduler)]


# --8<-- [end:cachekit_find_denoisers]


# --8<-- [start:cachekit_regions]
@hookimpl
def cachekit_regions(model: nn.Module) -> list[Region] | None:
    if not isinstance_str(model, "MyTransformer"):
        return None
    blocks = tuple(f"blocks.{index}" for index in range(len(model.blocks)))
    return [
        # the default region: all blocks but the first, whose residual is the probe
        Region("middle", blocks[1:], mode="residual", probe_base="blocks.0"),
        Region("all", blocks, mode="residual"),
    ]


# --8<-- [end:cachekit_regions]


# --8<-- [start:cachekit_extra_regions]
@hookimpl
def cachekit_extra_regions(model: nn.Module) -> list[Region] | None:
    # mylib's MyAttention layers can sit in any model, whichever plugin maps it
    paths = tuple(path for path, module in model.named_modules() if isinstance_str(module, "MyAttention"))
    if not paths:
        return None  # nothing of mylib's here: add nothing
    return [Region("my_attention", paths, mode="output", inner="replay")]  # their outputs reused together


# --8<-- [end:cachekit_extra_regions]


# --8<-- [start:cachekit_region_named]
BLOCK_RANGE = re.compile(r"blocks\[(\d+):(\d+)\]")


@hookimpl
def cachekit_region_named(model: nn.Module, name: str) -> Region | None:
    match = BLOCK_RANGE.fullmatch(name)
    if match is None or not isinstance_str(model, "MyTransformer"):
        return None
    start, stop, depth = int(match[1]), int(match[2]), len(model.blocks)
    if not 0 <= start < stop <= depth:
        raise RegionNotFoundError(f"region {name!r}: give blocks[start:stop] with 0 <= start < stop <= {depth}")
    return Region(name, tuple(f"blocks.{index}" for index in range(start, stop)), mode="residual")


# --8<-- [end:cachekit_region_named]


# --8<-- [start:cachekit_example_inputs]
@hookimpl
def cachekit_example_inputs(model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    if not isinstance_str(model, "MyTransformer"):
        return None
    tokens = torch.randn(1, 16, model.embed.in_features)  # batch 1, 16 tokens
    return (tokens,), {"timestep": torch.tensor(999.0)}


# --8<-- [end:cachekit_example_inputs]


# --8<-- [start:cachekit_step_completed]
@hookimpl
def cachekit_step_completed(scheduler: Any) -> bool | None:
    if not isinstance_str(scheduler, "MyScheduler"):
        return None
    return scheduler.calls % 2 == 0  # a predictor call, then a corrector call


# --8<-- [end:cachekit_step_completed]


# --8<-- [start:cachekit_register_policies]
class FixedStepsPolicy(Policy):
    """Refresh at the listed steps, reuse at every other."""

    kind: Literal["fixed-steps"] = "fixed-steps"
    steps: tuple[int, ...] = Field((0,), min_length=1, description="Steps that refresh, from 0.")

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        return step.index in self.steps

    def refresh_steps(self, num_steps: int) -> list[int]:
        return sorted(step for step in set(self.steps) if step < num_steps)


class EveryNthCallPolicy(Policy):
    """Refresh on every n-th call of a context, counting calls, not steps (a policy with state)."""

    kind: Literal["every-nth-call"] = "every-nth-call"
    n: int = Field(2, ge=1, description="Refresh on calls 0, n, 2n, ... of each context.")

    state_defaults: ClassVar[dict[str, int]] = {"calls": 0}  # made fresh for every region, context, generation

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        return state.calls % self.n == 0

    def update(self, state: PolicyState, step: StepInfo, refreshed: bool) -> None:
        state.calls += 1  # called after every decision, forced refreshes included


@hookimpl
def cachekit_register_policies(register: Callable[[type[Policy]], Any]) -> None:
    register(FixedStepsPolicy)  # configs can now say {kind: fixed-steps, steps: [0, 5, 9]}
    register(EveryNthCallPolicy)  # {kind: every-nth-call, n: 3}


# --8<-- [end:cachekit_register_policies]


# --8<-- [start:cachekit_register_probes]
@dataclass(frozen=True)
class TokenMeanProbe:
    """The region's entry input averaged over its tokens: less to compare at each step."""

    def watched_modules(self, region: Region) -> tuple[str, ...]:
        return ()  # nothing to record beyond the entry input

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return entry_inputs[0].mean(dim=1)


@hookimpl
def cachekit_register_probes(register: Callable[[str, Probe], None]) -> None:
    register("token_mean", TokenMeanProbe())  # {kind: similarity, probe: token_mean}


# --8<-- [end:cachekit_register_probes]


# --8<-- [start:cachekit_register_forecasters]
class HalfStepForecast(Forecaster):
    """Serves the latest result pushed half way further along its last change between refreshes."""

    def __init__(self) -> None:
        self.latest: Any = None
        self.previous: Any = None

    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        if rows is not None and self.latest is not None:  # only these batch rows refreshed
            value, self.previous = merge_rows(rows, value, self.latest), merge_rows(rows, self.latest, self.previous)
        else:
            self.previous = self.latest
        self.latest = value

    def serve(self, step: int) -> Any:
        if self.previous is None:
            return self.latest
        # results are tensors or tuples/dicts of them: tree_map walks the latest and previous in step
        return tree_map(lambda f1, f0: f1 if f0 is None else f1 + 0.5 * (f1 - f0), self.latest, self.previous)

    def nbytes(self) -> int:
        return nbytes(self.latest, self.previous)


@hookimpl
def cachekit_register_forecasters(register: Callable[[str, type[Forecaster]], None]) -> None:
    register("half-step", HalfStepForecast)  # {forecast: half-step}


# --8<-- [end:cachekit_register_forecasters]


# --8<-- [start:cachekit_load_experiment_model]
@hookimpl
def cachekit_load_experiment_model(spec: ModelSpec) -> Any | None:
    if spec.builder != "mylib-tiny":
        return None  # another plugin may load this source or builder
    import mylib  # imported only when an experiment asks for one of its models

    pipeline = mylib.MyPipeline.tiny(**spec.options)
    return pipeline.to(device=spec.device, dtype=getattr(torch, spec.dtype))


# --8<-- [end:cachekit_load_experiment_model]


# --8<-- [start:cachekit_experiment_models]
@hookimpl
def cachekit_experiment_models() -> list[ModelSpec]:
    return [ModelSpec(builder="mylib-tiny")]  # 'mylib-tny' gets "(did you mean 'mylib-tiny'?)"


# --8<-- [end:cachekit_experiment_models]


# --8<-- [start:cachekit_experiment_caller]
@dataclass(frozen=True)
class MyCaller:
    """mylib pipelines take ``steps`` and one ``seed`` per sample, and return samples in [-1, 1]."""

    reserved = frozenset({"steps", "seeds"})  # so sampling.call may not set them

    def __call__(self, pipeline: Any, request: SampleRequest) -> torch.Tensor:
        samples = pipeline.generate(steps=request.steps, seeds=list(request.seeds), **request.options)
        return ((samples + 1) / 2).float().cpu()


@hookimpl
def cachekit_experiment_caller(spec: ModelSpec) -> MyCaller | None:
    return MyCaller() if spec.builder == "mylib-tiny" else None


# --8<-- [end:cachekit_experiment_caller]


# --8<-- [start:cachekit_sample_scorer]
@dataclass(frozen=True)
class MeanBrightness:
    """A toy scorer: the mean pixel value of the samples (a real one would be a FID or an accuracy)."""

    metrics = {"brightness": True}  # metric name -> higher is better

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        return {"brightness": float(images.mean())}


@hookimpl
def cachekit_sample_scorer(spec: ModelSpec) -> MeanBrightness | None:
    return MeanBrightness() if spec.builder == "mylib-tiny" else None


# --8<-- [end:cachekit_sample_scorer]


# --8<-- [start:cachekit_experiment_entry_keys]
BLOCKS = EntryKey(
    type=tuple[NonNegativeInt, NonNegativeInt],
    to_config=lambda span: {"regions": [f"blocks[{span[0]}:{span[1]}]"]},
)


@hookimpl
def cachekit_experiment_entry_keys() -> dict[str, EntryKey]:
    return {"blocks": BLOCKS}  # {interval: 3, blocks: [1, 3]} caches region blocks[1:3]


# --8<-- [end:cachekit_experiment_entry_keys]
