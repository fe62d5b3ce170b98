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
from typing import Any

import torch

from cachekit.registry import Registry


class Forecaster(ABC):
    """Keeps one stored result between refreshes; made fresh for every region, context and generation."""

    @abstractmethod
    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        """Store ``value``, computed at ``step``; ``rows`` (a bool per batch row) limits it to those rows."""

    @abstractmethod
    def serve(self, step: int) -> Any:
        """What a reuse step at ``step`` is served, shaped as the recorded values."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the tensors this forecaster keeps."""


FORECASTERS: Registry[type[Forecaster]] = Registry("forecaster", "forecasters")
"""Forecaster classes by name (``none``, ``linear``, and those plugins register)."""


def register_forecaster(name: str, cls: type[Forecaster]) -> None:
    """Make ``cls`` available to configs as ``forecast: <name>``."""
    if not (isinstance(cls, type) and issubclass(cls, Forecaster)):
        raise TypeError(f"forecaster {name!r} must be a Forecaster subclass, got {cls!r}")
    FORECASTERS.add(name, cls)
