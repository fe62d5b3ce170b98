"""Example inputs: one small, seeded forward call of each model a plugin maps.

``cachekit inspect`` measures each region's share of the FLOPs on this call and the
conformance suite drives the model with it. A plugin keeps one :class:`ExampleInputs`
registry and registers a builder per model class::

    EXAMPLES = ExampleInputs()

    @EXAMPLES.builds("MyDiT")
    def _my_dit(model, batch_size, generator):
        return {"x": noise(generator, batch_size, 4, 8, 8), "t": timesteps(batch_size)}

    @hookimpl(trylast=True)
    def cachekit_example_inputs(model):
        return EXAMPLES.inputs(model)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Builder = Callable[[nn.Module, int, torch.Generator], dict[str, Any] | None]
"""Makes the keyword arguments of one call of a model with a batch size, drawing its noise
from a seeded generator; ``None`` when it cannot for this model's config."""

TIMESTEP = 500.0
"""The timestep of an example call, unless a builder chooses another."""


class ExampleInputs:
    """Example-input builders by class name, matched along the model's MRO.

    Args:
        fallback: the builder of models with no registered class (a model recognised by its
            shape rather than its class), or ``None`` to make no inputs for them.
    """

    def __init__(self, fallback: Builder | None = None) -> None:
        self._builders: dict[str, Builder] = {}
        self._fallback = fallback

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names a builder is registered for."""
        return tuple(self._builders)

    def builds(self, *class_names: str) -> Callable[[Builder], Builder]:
        """Decorator registering a builder for models of ``class_names`` (subclasses included).

        Registering a class name again replaces its builder with a warning.
        """
        if not class_names:
            raise TypeError("ExampleInputs.builds needs at least one class name")

        def register(builder: Builder) -> Builder:
            for name in class_names:
                if name in self._builders and self._builders[name] is not builder:
                    warnings.warn(f"example inputs of {name!r} re-registered by {builder.__qualname__}", stacklevel=3)
                self._builders[name] = builder
            return builder

        return register

    def kwargs(self, model: nn.Module, batch_size: int = 1, seed: int = 0) -> dict[str, Any] | None:
        """Keyword arguments of one forward call of ``model`` with ``batch_size`` samples, the
        noise drawn from a generator seeded with ``seed``; ``None`` when no builder makes them."""
        generator = torch.Generator().manual_seed(seed)
        builder = next(
            (self._builders[cls.__name__] for cls in type(model).__mro__ if cls.__name__ in self._builders),
            self._fallback,
        )
        return None if builder is None else builder(model, batch_size, generator)

    def inputs(self, model: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """``((), kwargs)`` of one call with batch size 1: an answer to ``cachekit_example_inputs``."""
        kwargs = self.kwargs(model)
        return None if kwargs is None else ((), kwargs)


def noise(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn from ``generator``."""
    return torch.randn(*shape, generator=generator)


def timesteps(batch_size: int, value: float = TIMESTEP) -> torch.Tensor:
    """One timestep ``value`` per sample."""
    return torch.full((batch_size,), value)
