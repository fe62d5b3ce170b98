"""Exact input keys: a copy of a module call's inputs, and the test that another call matches it.

A keyed region's module reuses its stored output only for a call whose input equals the
stored call's input value for value: the same arguments around the tensors, and each
tensor of the same shape, dtype and device with equal elements (``torch.equal``). Never
the tensor's address alone: a new tensor may sit in the memory of a freed one, and a
tensor may be changed in place while its address stays.

The key holds a copy of each input tensor (a *snapshot*), so nothing the caller later does
to its own tensor changes the key. Comparing reads the input once, far less work than
projecting it. Within one denoiser call a tensor object is compared once and copied once:
every key and value projection of a model reads the same encoder states, so the first
module compares them and the others find the answer by the object's identity, trusted
only while its version counter (which every in-place change bumps) stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cachekit.reuse.tree import tree_map

_TENSOR = object()
"""Stands in the skeleton of a call for each of its tensors."""


@dataclass(frozen=True)
class InputKey:
    """What a module call was given: its arguments with each tensor replaced by a placeholder
    (``skeleton``), and a snapshot of each tensor in order (``tensors``)."""

    skeleton: Any
    tensors: tuple[torch.Tensor, ...]


def version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter, bumped by every in-place change; ``None`` for an
    inference tensor (made under ``torch.inference_mode``), which keeps none."""
    return None if tensor.is_inference() else tensor._version


def same_values(tensor: torch.Tensor, snapshot: torch.Tensor) -> bool:
    """Same shape, dtype and device, and equal elements."""
    return (
        tensor.shape == snapshot.shape
        and tensor.dtype == snapshot.dtype
        and tensor.device == snapshot.device
        and torch.equal(tensor, snapshot)
    )


def _split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[torch.Tensor]]:
    found: list[torch.Tensor] = []

    def take(tensor: torch.Tensor, _: Any) -> object:
        found.append(tensor)
        return _TENSOR

    return tree_map(take, (args, kwargs), None), found


class InputKeys:
    """Makes and matches the input keys of the module calls of one denoiser call.

    :meth:`forget` ends the call: what was learnt about its tensor objects is dropped.
    """

    def __init__(self) -> None:
        self._known: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}
        """``id`` of a tensor of this call -> the tensor, its version then, a snapshot it equals."""
        self._made: list[torch.Tensor] = []
        """Snapshots made in this call, shared by equal inputs that are other tensor objects."""

    def forget(self) -> None:
        """The denoiser call ended: drop every reference to its tensors."""
        self._known.clear()
        self._made.clear()

    def matches(self, key: InputKey, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether a call with ``args`` and ``kwargs`` was given exactly what ``key`` holds."""
        skeleton, tensors = _split(args, kwargs)
        if len(tensors) != len(key.tensors) or skeleton != key.skeleton:
            return False
        return all(self._equals(tensor, snapshot) for tensor, snapshot in zip(tensors, key.tensors, strict=True))

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> InputKey:
        """The key of a call with ``args`` and ``kwargs``, each tensor snapshot shared where possible."""
        skeleton, tensors = _split(args, kwargs)
        return InputKey(skeleton, tuple(self._snapshot(tensor) for tensor in tensors))

    def _recall(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """The snapshot this very tensor, unchanged since, was found equal to in this call."""
        known = self._known.get(id(tensor))
        if known is None or known[0] is not tensor or known[1] != version(tensor):
            return None
        return known[2]

    def _learn(self, tensor: torch.Tensor, snapshot: torch.Tensor) -> None:
        current = version(tensor)
        if current is not None:
            self._known[id(tensor)] = (tensor, current, snapshot)

    def _equals(self, tensor: torch.Tensor, snapshot: torch.Tensor) -> bool:
        if self._recall(tensor) is snapshot:
            return True
        if not same_values(tensor, snapshot):
            return False
        self._learn(tensor, snapshot)
        return True

    def _snapshot(self, tensor: torch.Tensor) -> torch.Tensor:
        snapshot = self._recall(tensor)
        if snapshot is None:
            snapshot = next((made for made in self._made if same_values(tensor, made)), None)
        if snapshot is None:
            snapshot = tensor.detach().clone()
            self._made.append(snapshot)
        self._learn(tensor, snapshot)
        return snapshot
