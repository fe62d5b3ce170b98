"""The policy calibration runs under: always refresh, and note each call's step and probe drift."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PrivateAttr

from cachekit.clock import StepInfo
from cachekit.policies.base import Policy, PolicyBinding, PolicyState


class RecordingPolicy(Policy):
    """Refreshes at every call (the generation stays uncached) and keeps what the engine told it
    last: the call's :class:`~cachekit.clock.StepInfo` and the drift of ``probe``.

    Not a registered kind: calibration installs it directly, one bound copy per region.
    """

    kind: Literal["calibration-recording"] = "calibration-recording"
    probe: str = Field("entry_input", min_length=1, description="The probe whose drift is recorded.")
    _step: StepInfo | None = PrivateAttr(None)
    _drift: float | torch.Tensor | None = PrivateAttr(None)

    def probe_name(self) -> str:
        return self.probe

    def bind(self, binding: PolicyBinding) -> RecordingPolicy:
        return RecordingPolicy(probe=self.probe)

    def observe(self, state: PolicyState, drift: float | torch.Tensor) -> None:
        self._drift = drift

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        self._step = step
        return True

    def take(self) -> tuple[StepInfo | None, float | torch.Tensor | None]:
        """The step and drift of the call in progress, forgotten once taken."""
        taken = self._step, self._drift
        self._step = self._drift = None
        return taken
