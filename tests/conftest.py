"""Shared fixtures: a policy that records every StepInfo it is asked about."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest

from cachekit import Policy, StepInfo, register_policy
from cachekit.policies import RegionMemory


@register_policy
class RecordingPolicy(Policy):
    """Refreshes every call and remembers the StepInfo of each (tests only)."""

    kind: Literal["recording"] = "recording"
    seen: ClassVar[list[StepInfo]] = []

    def should_refresh(self, step: StepInfo, memory: RegionMemory) -> bool:
        RecordingPolicy.seen.append(step)
        return True


@pytest.fixture
def recorded() -> list[StepInfo]:
    """The StepInfos the ``recording`` policy sees during the test."""
    RecordingPolicy.seen = []
    return RecordingPolicy.seen
