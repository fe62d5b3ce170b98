"""The ``model`` section of an experiment config: which model to sample from, and how to load it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSpec(BaseModel):
    """The model to sample from: a shipped model, a local folder, a hub id, or a builder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(
        None,
        description="A shipped model name ('digits-unet', 'digits-dit'), a local folder, or a hub id.",
    )
    builder: str | None = Field(
        None, description="A tiny-model builder name (seeded random weights, no download), instead of source."
    )
    pipeline: str | None = Field(
        None, description="Pipeline class to load with, e.g. 'StableDiffusionPipeline' (default: as saved)."
    )
    scheduler: str | None = Field(
        None, description="Scheduler class to swap in, built from the pipeline's scheduler config ('DDIMScheduler')."
    )
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict, description="Scheduler config overrides, e.g. {timestep_spacing: trailing}."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for from_pretrained or the builder (variant, ...)."
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Weights and compute dtype.")
    device: str = Field("cpu", min_length=1, description="Torch device to run on ('cpu', 'cuda', 'cuda:1', 'mps').")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.source is None) == (self.builder is None):
            raise ValueError("give exactly one of 'source' (shipped name, folder or hub id) and 'builder'")
        return self

    @property
    def label(self) -> str:
        """The source or builder name, for messages and result files."""
        return self.source or f"builder:{self.builder}"
