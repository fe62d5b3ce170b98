"""Griffe extension: Sphinx roles in docstrings (:class:`X`) become links in the API reference.

The code's docstrings cross-reference with roles such as ``:class:`CacheHandle``` and
``:meth:`~AdapterConformance.make_model```, as Python docstrings commonly do; mkdocstrings
would print them verbatim. Each role becomes an autorefs link to the object's canonical
path, resolved in the scope of the docstring's owner, or plain code when the target is not
a public object of the package being documented (a method of another library).
reStructuredText's literal blocks (``example::`` then the code) become fenced Python code.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|data|exc|mod|obj):`(~?)([\w.]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                text = _ROLE.sub(lambda match, obj=obj: _link(pkg, obj, *match.groups()), obj.docstring.value)
                obj.docstring.value = _fence_literal_blocks(text)


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


def _fence_literal_blocks(text: str) -> str:
    """``text::``, a blank line, then code: the code fenced as Python, the marker made ``text:``.

    The code runs until a blank line followed by unindented text, or the end: a docstring's
    dedenting can leave the code of a one-line summary's example unindented.
    """
    lines, out, index = text.split("\n"), [], 0
    while index < len(lines):
        line = lines[index]
        if not (
            line.endswith("::") and line.strip() != "::" and index + 2 < len(lines) and not lines[index + 1].strip()
        ):
            out.append(line)
            index += 1
            continue
        end = index + 3
        while end < len(lines) and not (
            lines[end].strip() and not lines[end][0].isspace() and not lines[end - 1].strip()
        ):
            end += 1
        code = textwrap.dedent("\n".join(lines[index + 2 : end])).strip("\n")
        out += [line[:-1], "", "```python", code, "```", ""]
        index = end
    return "\n".join(out)
