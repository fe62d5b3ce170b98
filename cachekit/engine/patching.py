"""Shadowing a method on one instance, and undoing it exactly.

A patch never changes an object's class: it sets an instance attribute that wraps the
original, and undoing deletes that attribute again (or puts back the instance attribute
that was there before), so the object is left as it was.

Another tool may wrap the method after cachekit did (accelerate's and diffusers' offloading
hooks shadow ``forward`` the same way, keeping what they found as the function they call).
Deleting the attribute then would remove that tool's wrapper, and restoring cachekit's
later would bring back a stale one. So an undo that finds another wrapper on top leaves
it in place and turns its own shadow into a pass-through: it calls the original and holds
nothing of cachekit's; once back on top (the other tool removed its wrapper) its first
call removes it.

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


class Shadow:
    """The callable set on the instance: runs ``wrapper``; copies of it are :class:`Detached`."""

    def __init__(self, owner: Any, name: str, wrapper: Callable[..., Any], original: Callable[..., Any]):
        functools.update_wrapper(self, original)  # first: it copies the original's attributes (another shadow's)
        self.owner = owner
        self.name = name
        self.wrapper = wrapper
        self.original = original
        self.restore: Callable[[], None] | None = None
        """Set by :meth:`bypass`: puts back what the instance held before, once this shadow is on top again."""

    def bypass(self, restore: Callable[[], None]) -> None:
        """Call the original from now on (another wrapper sits on top and calls this one)."""
        self.wrapper = self.original
        self.restore = restore

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.restore is not None and vars(self.owner).get(self.name) is self:
            self.restore()
        return self.wrapper(*args, **kwargs)

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
        """Remove the wrapper, leaving the instance's attributes as they were before.

        When another tool has wrapped the method since, its wrapper stays and this one
        becomes a pass-through (see the module's docstring).
        """
        if vars(self.obj).get(self.name) is self.wrapper:
            self._restore()
        else:
            self.wrapper.bypass(self._restore)

    def _restore(self) -> None:
        if self._own_before is _MISSING:
            delattr(self.obj, self.name)
        else:
            setattr(self.obj, self.name, self._own_before)
