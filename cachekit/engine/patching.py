"""Shadowing a method on one instance, and undoing it exactly.

A patch never changes an object's class: it sets an instance attribute that wraps the
original, and undoing deletes that attribute again (or puts back the instance attribute
that was there before), so the object is left as it was.

A copy of a patched object is a plain object: ``copy.deepcopy`` and ``pickle`` turn each
shadow into a :class:`Detached` stand-in that calls the class's own method and removes
itself from the copy at its first call. The copy never reaches the original's hooks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_MISSING = object()


class Detached:
    """What a shadowed method becomes in a copy: the class's method, removing itself when first called."""

    def __init__(self, owner: Any, name: str):
        self.owner = owner
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        vars(self.owner).pop(self.name, None)
        return getattr(self.owner, self.name)(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Detached, (self.owner, self.name))


class Shadow(functools.partial):  # a partial: called from C, so the shadow adds no Python frame
    """The callable set on the instance: runs ``wrapper``; copies of it are :class:`Detached`."""

    owner: Any
    name: str

    def __new__(cls, owner: Any, name: str, wrapper: Callable[..., Any], original: Callable[..., Any]) -> Shadow:
        shadow = super().__new__(cls, wrapper)
        shadow.owner = owner
        shadow.name = name
        functools.update_wrapper(shadow, original)
        return shadow

    def __deepcopy__(self, memo: dict[int, Any]) -> Detached:
        return Detached(memo.get(id(self.owner), self.owner), self.name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Detached, (self.owner, self.name))


class MethodPatch:
    """Replaces ``obj.<name>`` by ``make_wrapper(original)`` until :meth:`undo`."""

    def __init__(self, obj: Any, name: str, make_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]):
        self.obj = obj
        self.name = name
        self._own_before = vars(obj).get(name, _MISSING)
        original = getattr(obj, name)
        self.wrapper = Shadow(obj, name, make_wrapper(original), original)
        setattr(obj, name, self.wrapper)

    def undo(self) -> None:
        """Remove the wrapper, leaving the instance's attributes as they were before."""
        if self._own_before is _MISSING:
            delattr(self.obj, self.name)
        else:
            setattr(self.obj, self.name, self._own_before)
