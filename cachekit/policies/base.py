"""The policy interface, the state a policy declares, and the registry of kinds.

A policy is a frozen pydantic model; what it remembers between calls lives in a
:class:`PolicyState` the engine keeps for each region and context. A kind *declares* its
state with defaults (:attr:`Policy.state_defaults`, like torchmetrics' ``add_state``): the
base class builds a fresh state from them at every new generation, so no policy writes a
reset. The engine knows nothing of any kind's fields: per call it hands the policy the
drift of the probe the policy names (:meth:`Policy.probe_name`), asks
:meth:`Policy.should_refresh`, and tells :meth:`Policy.update` what happened.

Decisions are per sample: a probe's drift has one value per batch row, state fields become
per-row tensors through ordinary arithmetic, and :meth:`Policy.should_refresh` may return
one bool for the whole batch or a bool tensor with one value per row.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict

from cachekit.clock import StepInfo
from cachekit.denoiser import Denoiser
from cachekit.errors import ConfigError
from cachekit.region import Region
from cachekit.registry import Registry
from cachekit.reuse.spec import ForecastSpec

Decision = bool | torch.Tensor
"""One bool for every batch row, or a bool tensor with one value per row."""


class PolicyState(SimpleNamespace):
    """The state one policy keeps for one region in one context, its fields declared by the kind."""


def where(decision: Decision, if_true: Any, if_false: Any) -> Any:
    """``if_true`` where ``decision`` holds, ``if_false`` elsewhere (per row when it is a tensor)."""
    if isinstance(decision, torch.Tensor):
        return torch.where(decision, torch.as_tensor(if_true), torch.as_tensor(if_false))
    return if_true if decision else if_false


@dataclass(frozen=True)
class PolicyBinding:
    """Where a policy is installed, handed to :meth:`Policy.bind` once per region at install time.

    Attributes:
        denoiser: the denoiser the region belongs to (its module and scheduler).
        region: the region the policy decides for.
        regions: the names of every region installed on that denoiser, in order.
        forecast: the forecast the region's reuse steps are served (forecaster and parameters).
    """

    denoiser: Denoiser
    region: Region
    regions: tuple[str, ...]
    forecast: ForecastSpec


class Policy(BaseModel):
    """Decides, for each denoiser call and region, whether to refresh or reuse.

    Subclasses are pydantic models with a literal ``kind`` and implement
    :meth:`should_refresh`. The engine always refreshes when nothing is cached yet, so a
    policy never has to handle that case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    state_defaults: ClassVar[Mapping[str, Any]] = {}
    """The state this kind keeps, by field name, with the value each generation starts from."""

    def probe_name(self) -> str | None:
        """The probe whose drift :meth:`observe` receives, or ``None`` for a policy that reads none."""
        return None

    def new_state(self, **values: Any) -> PolicyState:
        """A fresh state from :attr:`state_defaults`; ``values`` override declared fields (tests, docs)."""
        unknown = set(values) - set(self.state_defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} declares no state {sorted(unknown)}; it has {list(self.state_defaults)}"
            )
        return PolicyState(**{**copy.deepcopy(dict(self.state_defaults)), **values})

    def observe(self, state: PolicyState, drift: float | torch.Tensor) -> None:
        """Take this call's probe drift before :meth:`should_refresh`: one float for a batch of
        one row, else a float tensor with one value per row."""

    def should_refresh(self, step: StepInfo, state: PolicyState) -> Decision:
        """True to run the region at this call, False to reuse what is stored (or one per row)."""
        raise NotImplementedError

    def update(self, state: PolicyState, step: StepInfo, refreshed: Decision) -> None:
        """Take what was decided (a refresh may be forced: nothing stored yet), after :meth:`should_refresh`."""

    def bind(self, binding: PolicyBinding) -> Policy:
        """The policy to install for ``binding``'s region: ``self`` unless a kind needs to know
        where it runs (a calibrated schedule checks the model and regions it was made for)."""
        return self

    def refresh_steps(self, num_steps: int) -> list[int] | None:
        """The steps this policy refreshes at, when known ahead of time (``None`` otherwise).

        A kind that implements it has a schedule fixed in advance and may run in static mode
        (:mod:`cachekit.engine.static`), which refreshes at exactly these steps.
        """
        return None


PolicyT = TypeVar("PolicyT", bound=type[Policy])
POLICIES: Registry[type[Policy]] = Registry("policy kind", "kinds")
"""Policy classes by kind."""


def register_policy(cls: PolicyT) -> PolicyT:
    """Register a policy class under its ``kind`` default; usable as a decorator.

    Registering a kind again replaces the earlier class with a warning.
    """
    kind = cls.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} must give its 'kind' field a string default")
    POLICIES.add(kind, cls)
    return cls


def policy_kinds() -> dict[str, type[Policy]]:
    """The registered policy kinds, by name (plugins' kinds once :func:`~cachekit.plugin_manager.load_plugins` ran)."""
    return POLICIES.items()


def parse_policy(value: Any) -> Policy:
    """A policy from a :class:`Policy` instance, a ``{"kind": ..., ...}`` mapping or a kind name."""
    if isinstance(value, Policy):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"a policy must be a mapping with a 'kind' key, got {type(value).__name__}: {value!r}")
    return POLICIES.get(value.get("kind")).model_validate(dict(value))
