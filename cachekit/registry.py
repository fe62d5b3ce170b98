"""A named registry: what plugins add policy kinds, probes and forecasters to.

Registering a name again replaces the earlier entry with a warning; asking for an unknown
name is a :class:`~cachekit.errors.ConfigError` that lists the known ones, with a "did you
mean". A registry never loads plugins: :func:`cachekit.plugin_manager.load_plugins` fills
every registry once, before a config is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from cachekit.errors import ConfigError, did_you_mean, listing

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, for one kind of thing (``what``: "policy kind", "probe", ...; ``plural`` for messages)."""

    def __init__(self, what: str, plural: str):
        self.what = what
        self.plural = plural
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` as ``name``; a different entry under a taken name warns and replaces it."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.what} name must be a non-empty string, got {name!r}")
        if name in self._entries and self._entries[name] is not entry:
            warnings.warn(f"{self.what} {name!r} re-registered by {entry!r}", stacklevel=3)
        self._entries[name] = entry

    def get(self, name: object) -> T:
        """The entry registered as ``name``, or a :class:`ConfigError` listing the known names."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        shown = repr(name) if isinstance(name, str) else f"{name!r} (a {type(name).__name__}, not a name)"
        raise ConfigError(
            f"unknown {self.what} {shown}{did_you_mean(str(name), self._entries)}; "
            f"known {self.plural}: {listing(self._entries)}"
        )

    @contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Entries registered inside the ``with`` block are forgotten at its end (for tests)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> dict[str, T]:
        """A copy of the entries by name."""
        return dict(self._entries)
