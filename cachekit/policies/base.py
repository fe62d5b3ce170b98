"""The policy interface, the per-region memory policies read, and the registry of kinds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from cachekit.clock import StepInfo
from cachekit.errors import ConfigError, did_you_mean, listing


@dataclass
class RegionMemory:
    """What the engine remembers of one region in one context, for its policy to read.

    The engine owns this state and resets it at every new generation; policies only read.
    """

    last_refresh_step: int | None = None
    consecutive_reuses: int = 0
    accumulated_drift: float = 0.0
    has_cache: bool = False


class Policy(BaseModel):
    """Decides, for each denoiser call and region, whether to refresh or reuse.

    Subclasses are pydantic models with a literal ``kind`` and implement
    :meth:`should_refresh`. The engine always refreshes when nothing is cached yet, so a
    policy never has to handle that case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    uses_drift: ClassVar[bool] = False
    """True when the engine must measure the probe's drift before asking (similarity)."""

    def should_refresh(self, step: StepInfo, memory: RegionMemory) -> bool:
        """True to run the region at this call, False to reuse what is stored."""
        raise NotImplementedError

    def refresh_steps(self, num_steps: int) -> list[int] | None:
        """The steps this policy refreshes at, when known ahead of time (``None`` otherwise)."""
        return None


PolicyT = TypeVar("PolicyT", bound=type[Policy])
_POLICY_KINDS: dict[str, type[Policy]] = {}


def register_policy(cls: PolicyT) -> PolicyT:
    """Register a policy class under its ``kind`` default; usable as a decorator.

    Registering a kind again replaces the earlier class with a warning.
    """
    kind = cls.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} must give its 'kind' field a string default")
    if kind in _POLICY_KINDS and _POLICY_KINDS[kind] is not cls:
        warnings.warn(f"policy kind {kind!r} re-registered by {cls.__qualname__}", stacklevel=2)
    _POLICY_KINDS[kind] = cls
    return cls


def policy_kinds() -> dict[str, type[Policy]]:
    """The registered policy kinds, by name (plugins' kinds included once loaded)."""
    from cachekit.plugin_manager import get_plugin_manager

    get_plugin_manager()
    return dict(_POLICY_KINDS)


def parse_policy(value: Any) -> Policy:
    """A policy from a :class:`Policy` instance, a ``{"kind": ..., ...}`` mapping or a kind name."""
    if isinstance(value, Policy):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ConfigError(f"a policy must be a mapping with a 'kind' key, got {type(value).__name__}: {value!r}")
    kinds = policy_kinds()
    kind = value.get("kind")
    if kind not in kinds:
        raise ConfigError(
            f"unknown policy kind {kind!r}{did_you_mean(str(kind), kinds)}; known kinds: {listing(kinds)}"
        )
    return kinds[kind].model_validate(value)
