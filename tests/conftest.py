"""Shared fixtures: a policy that records every StepInfo it is asked about; scoped registries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import ClassVar, Literal

import pytest

from cachekit import Policy, PolicyState, StepInfo, register_policy
from cachekit.engine.probes import PROBES
from cachekit.policies import POLICIES
from cachekit.reuse import FORECASTERS


@register_policy
class RecordingPolicy(Policy):
    """Refreshes every call and remembers the StepInfo of each (tests only)."""

    kind: Literal["recording"] = "recording"
    seen: ClassVar[list[StepInfo]] = []

    def should_refresh(self, step: StepInfo, state: PolicyState) -> bool:
        RecordingPolicy.seen.append(step)
        return True


@pytest.fixture
def recorded() -> list[StepInfo]:
    """The StepInfos the ``recording`` policy sees during the test."""
    RecordingPolicy.seen = []
    return RecordingPolicy.seen


@pytest.fixture
def scoped_registries() -> Iterator[None]:
    """Policy kinds, probes and forecasters registered during the test vanish after it."""
    with ExitStack() as stack:
        for registry in (POLICIES, PROBES, FORECASTERS):
            stack.enter_context(registry.scoped())
        yield
