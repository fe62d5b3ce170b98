"""``similarity``: refresh when a cheap probe has drifted enough since the last refresh."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cachekit.clock import StepInfo
from cachekit.errors import did_you_mean, listing
from cachekit.policies.base import Policy, RegionMemory, register_policy


@register_policy
class SimilarityPolicy(Policy):
    """Reuse while the probe stays close; refresh once its accumulated drift reaches ``threshold``.

    The drift of a call is the relative L1 change of the probe since the previous call of
    the same context, ``mean|p - p_prev| / mean|p_prev|``; drifts add up from the last
    refresh (TeaCache's rule). The default probe is the region's entry input, which is
    computed anyway, so probing costs one reduction.
    """

    kind: Literal["similarity"] = "similarity"
    threshold: float = Field(0.1, gt=0.0, description="Accumulated relative L1 drift that forces a refresh.")
    probe: str = Field(
        "entry_input",
        min_length=1,
        description="Probe name: 'entry_input', 'entry_residual', or one a plugin registers.",
    )
    warmup_steps: int = Field(1, ge=1, description="Steps at the start that always refresh (at least 1).")
    max_consecutive_reuse: int | None = Field(
        None, ge=1, description="Refresh after this many reuses in a row, whatever the drift."
    )
    refresh_last_steps: int = Field(0, ge=0, description="The last steps that always refresh.")

    uses_drift = True

    @model_validator(mode="after")
    def _known_probe(self) -> SimilarityPolicy:
        from cachekit.probes import probe_names

        names = probe_names()
        if self.probe not in names:
            raise ValueError(f"unknown probe {self.probe!r}{did_you_mean(self.probe, names)}; known: {listing(names)}")
        return self

    def should_refresh(self, step: StepInfo, memory: RegionMemory) -> bool:
        if step.index < self.warmup_steps:
            return True
        if step.num_steps is not None and step.index >= step.num_steps - self.refresh_last_steps:
            return True
        if self.max_consecutive_reuse is not None and memory.consecutive_reuses >= self.max_consecutive_reuse:
            return True
        return memory.accumulated_drift >= self.threshold
