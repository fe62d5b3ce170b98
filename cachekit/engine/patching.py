"""Shadowing a method on one instance, and undoing it exactly.

A patch never changes an object's class: it sets an instance attribute that wraps the
original, and undoing deletes that attribute again (or puts back the instance attribute
that was there before), so the object is left as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_MISSING = object()


class MethodPatch:
    """Replaces ``obj.<name>`` by ``make_wrapper(original)`` until :meth:`undo`."""

    def __init__(self, obj: Any, name: str, make_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]):
        self.obj = obj
        self.name = name
        self._own_before = vars(obj).get(name, _MISSING)
        original = getattr(obj, name)
        self.wrapper = functools.update_wrapper(make_wrapper(original), original)
        setattr(obj, name, self.wrapper)

    def undo(self) -> None:
        """Remove the wrapper, leaving the instance's attributes as they were before."""
        if self._own_before is _MISSING:
            delattr(self.obj, self.name)
        else:
            setattr(self.obj, self.name, self._own_before)
