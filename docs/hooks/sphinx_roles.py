"""Griffe extension: Sphinx roles in docstrings (:class:`X`) become links in the API reference.

The code's docstrings cross-reference with roles such as ``:class:`CacheHandle``` and
``:meth:`~AdapterConformance.make_model```, as Python docstrings commonly do; mkdocstrings
would print them verbatim. Each role becomes an autorefs link to the object's canonical
path, resolved in the scope of the docstring's owner, or plain code when the target is not
a public object of the package being documented (a method of another library).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|data|exc|mod|obj):`(~?)([\w.]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _ROLE.sub(lambda match, obj=obj: _link(pkg, obj, *match.groups()), obj.docstring.value)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _link(pkg: griffe.Module, owner: griffe.Object, tilde: str, target: str) -> str:
    shown = target.rsplit(".", 1)[-1] if tilde else target
    path = _resolve(pkg, owner, target)
    return f"[`{shown}`][{path}]" if path else f"`{shown}`"


def _resolve(pkg: griffe.Module, owner: griffe.Object, target: str) -> str | None:
    """Canonical path of ``target`` seen from ``owner``, if it is a public object of ``pkg``."""
    head, _, rest = target.partition(".")
    try:
        base = head if head == pkg.name else owner.resolve(head)
    except griffe.NameResolutionError:
        return None
    full = f"{base}.{rest}" if rest else base
    if full != pkg.path and not full.startswith(f"{pkg.path}."):
        return None
    try:
        found = pkg[full[len(pkg.path) + 1 :]] if full != pkg.path else pkg
        path = found.canonical_path
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return None if any(part.startswith("_") for part in path.split(".")) else path
