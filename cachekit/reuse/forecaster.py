"""The forecaster interface and its registry: what a stored result serves at a reuse step.

A forecaster keeps one stored result of one region in one context (an exit output, a
residual, a replayed module output) from refresh to refresh and says what each reuse step is
served. ``none`` serves the latest result as computed (DeepCache, FORA); ``linear``
extrapolates it from the last two refreshes. Plugins add kinds through the
``cachekit_register_forecasters`` hook; a config picks one with ``forecast: <name>``.

Refreshes may cover only some batch rows (decisions are per sample): ``record`` then gets
the mask of the rows that refreshed, and a forecaster keeps each row's own history.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from cachekit.registry import Registry


class ForecasterOptions(BaseModel):
    """The parameters a forecaster declares (none here); a subclass adds fields with bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def label(self, name: str) -> str:
        """How results tables name the forecaster ``name`` with these parameters (``taylor2``)."""
        given = ", ".join(f"{key}={value}" for key, value in self)
        return f"{name}({given})" if given else name


class Forecaster(ABC):
    """Keeps one stored result between refreshes; made fresh for every region, context and generation.

    A forecaster with parameters names their model as :attr:`Options`; it is then made as
    ``cls(**options)`` (each field a keyword of ``__init__``), one without as ``cls()``.
    """

    Options: ClassVar[type[ForecasterOptions]] = ForecasterOptions
    """The parameters a config may give (``forecast: {name: taylor, order: 2}``)."""

    @abstractmethod
    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        """Store ``value``, computed at ``step``; ``rows`` (a bool per batch row) limits it to those rows."""

    @abstractmethod
    def serve(self, step: int) -> Any:
        """What a reuse step at ``step`` is served, shaped as the recorded values."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the tensors this forecaster keeps."""


ForecasterFactory = Callable[[], Forecaster]
"""Makes a fresh forecaster (a class with no parameters, or one bound to a config's parameters)."""

FORECASTERS: Registry[type[Forecaster]] = Registry("forecaster", "forecasters")
"""Forecaster classes by name (``none``, ``linear``, ``taylor``, ``hermite``, and those plugins register)."""


def register_forecaster(name: str, cls: type[Forecaster]) -> None:
    """Make ``cls`` available to configs as ``forecast: <name>``."""
    if not (isinstance(cls, type) and issubclass(cls, Forecaster)):
        raise TypeError(f"forecaster {name!r} must be a Forecaster subclass, got {cls!r}")
    FORECASTERS.add(name, cls)
