"""Walking stored results: module outputs are tensors, or tuples, lists and dicts of them.

Stored results keep their container types (namedtuples and dict subclasses such as
diffusers' output classes included). Per-row updates (:func:`merge_rows`) touch only tensors
whose first dimension is the batch; anything else is shared by every row and taken whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch


def tree_map(fn: Callable[[torch.Tensor, Any], Any], tree: Any, other: Any) -> Any:
    """``fn(leaf, other_leaf)`` for every tensor of ``tree``, walking ``other`` in step.

    ``other_leaf`` is ``None`` where ``other`` has no matching item. Leaves that are not
    tensors (``None``, numbers) are kept as they are.
    """
    if isinstance(tree, torch.Tensor):
        return fn(tree, other if isinstance(other, torch.Tensor) else None)
    if isinstance(tree, tuple | list):
        others = other if isinstance(other, tuple | list) and len(other) == len(tree) else (None,) * len(tree)
        items = [tree_map(fn, a, b) for a, b in zip(tree, others, strict=True)]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)  # namedtuples too
    if isinstance(tree, dict):
        mapped = copy.copy(tree)  # keeps dict subclasses
        for key, value in tree.items():
            mapped[key] = tree_map(fn, value, other.get(key) if isinstance(other, dict) else None)
        return mapped
    return tree


def tensors(tree: Any) -> list[torch.Tensor]:
    """Every tensor in ``tree``."""
    found: list[torch.Tensor] = []
    tree_map(lambda leaf, _: found.append(leaf), tree, None)
    return found


def nbytes(*trees: Any) -> int:
    """Bytes of the distinct tensor storages in ``trees``."""
    seen: dict[int, int] = {}
    for tree in trees:
        for leaf in tensors(tree):
            storage = leaf.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def row_mask(rows: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor | None:
    """``rows`` shaped to broadcast over ``leaf``'s batch rows, or ``None`` when ``leaf`` has no such rows."""
    if leaf.dim() == 0 or leaf.shape[0] != rows.shape[0]:
        return None
    return rows.to(leaf.device).view(-1, *([1] * (leaf.dim() - 1)))


def merge_rows(rows: torch.Tensor, new: Any, old: Any) -> Any:
    """``new`` in the rows where ``rows`` is true, ``old`` elsewhere (tensor by tensor).

    Tensors without batch rows, and tensors ``old`` lacks or shapes differently, come from ``new``.
    """

    def pick(leaf: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        mask = row_mask(rows, leaf)
        if mask is None or previous is None or previous.shape != leaf.shape:
            return leaf
        return torch.where(mask, leaf, previous)

    return tree_map(pick, new, old)


def take_rows(tree: Any, index: torch.Tensor, batch: int) -> Any:
    """``tree`` with every batch-major tensor (first dimension ``batch``) cut to the rows ``index``."""

    def take(leaf: torch.Tensor, _: Any) -> torch.Tensor:
        if leaf.dim() == 0 or leaf.shape[0] != batch:
            return leaf
        return leaf.index_select(0, index.to(leaf.device))

    return tree_map(take, tree, None)


def put_rows(full: Any, part: Any, index: torch.Tensor) -> Any:
    """``full`` with the rows ``index`` replaced by ``part``'s rows (tensor by tensor; ``full`` is not changed).

    Where ``full`` has no tensor with batch rows to put into, ``part``'s tensor is taken.
    """

    def put(leaf: torch.Tensor, whole: torch.Tensor | None) -> torch.Tensor:
        if whole is None or whole.dim() == 0 or whole.shape[1:] != leaf.shape[1:] or leaf.shape[0] != len(index):
            return leaf
        return whole.index_copy(0, index.to(whole.device), leaf.to(whole.dtype))

    return tree_map(put, part, full)
