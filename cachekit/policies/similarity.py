"""``similarity``: refresh when a cheap probe has drifted enough since the last refresh."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from cachekit.calibration.checks import probe_threshold
from cachekit.clock import StepInfo
from cachekit.engine.probes import PROBES
from cachekit.errors import PolicyError
from cachekit.policies.base import Decision, Policy, PolicyBinding, PolicyState, register_policy, where


@register_policy
class SimilarityPolicy(Policy):
    """Reuse while the probe stays close; refresh once its accumulated drift reaches ``threshold``.

    The drift of a call is the relative L1 change of the probe since the previous call of
    the same context, ``mean|p - p_prev| / mean|p_prev|``, measured per sample (batch row);
    drifts add up from the last refresh (TeaCache's rule). The default probe is the region's
    entry input, which is computed anyway, so probing costs one reduction.
    """

    kind: Literal["similarity"] = "similarity"
    threshold: float = Field(
        0.1, strict=True, gt=0.0, description="Accumulated relative L1 drift that forces a refresh."
    )
    probe: str = Field(
        "entry_input",
        min_length=1,
        description="Probe name: 'entry_input', 'entry_residual', or one a plugin registers.",
    )
    warmup_steps: int = Field(1, strict=True, ge=1, description="Steps at the start that always refresh (at least 1).")
    max_consecutive_reuse: int | None = Field(
        None, strict=True, ge=1, description="Refresh after this many reuses in a row, whatever the drift."
    )
    refresh_last_steps: int = Field(0, strict=True, ge=0, description="The last steps that always refresh.")
    error_budget: float | None = Field(
        None, gt=0.0, description="Instead of threshold: the error a reuse may reach, through the probe fit of 'fit'."
    )
    fit: str | None = Field(None, min_length=1, description="The calibration JSON whose probe fit error_budget uses.")

    state_defaults: ClassVar[dict[str, Any]] = {"drift": 0.0, "reuses": 0}
    """``drift``: accumulated since the last refresh; ``reuses``: reuses in a row."""

    @model_validator(mode="after")
    def _known_probe(self) -> SimilarityPolicy:
        PROBES.get(self.probe)
        return self

    @model_validator(mode="after")
    def _budget_with_fit(self) -> SimilarityPolicy:
        if (self.error_budget is None) != (self.fit is None):
            raise ValueError("give 'error_budget' and 'fit' (a calibration file) together, or neither")
        return self

    def bind(self, binding: PolicyBinding) -> SimilarityPolicy:
        """With ``error_budget``: the threshold at which the region's probe fit predicts that error."""
        if self.error_budget is None or self.fit is None:
            return self
        threshold = probe_threshold(self.fit, binding.denoiser, binding.region.name, self.probe, self.error_budget)
        return self.model_copy(update={"threshold": threshold})

    def probe_name(self) -> str:
        return self.probe

    def observe(self, state: PolicyState, drift: float | torch.Tensor) -> None:
        state.drift = state.drift + drift

    def should_refresh(self, step: StepInfo, state: PolicyState) -> Decision:
        if self.refresh_last_steps and step.num_steps is None:
            raise PolicyError(
                f"similarity: refresh_last_steps={self.refresh_last_steps} needs the number of steps: enable "
                "cachekit on a pipeline with a scheduler, or set 'num_steps' in the config for a bare model"
            )
        if step.index < self.warmup_steps:
            return True
        if step.num_steps is not None and step.index >= step.num_steps - self.refresh_last_steps:
            return True
        refresh = state.drift >= self.threshold
        if self.max_consecutive_reuse is not None:
            refresh = refresh | (state.reuses >= self.max_consecutive_reuse)
        return refresh

    def update(self, state: PolicyState, step: StepInfo, refreshed: Decision) -> None:
        state.drift = where(refreshed, 0.0, state.drift)
        state.reuses = where(refreshed, 0, state.reuses + 1)
