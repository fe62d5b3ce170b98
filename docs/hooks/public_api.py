"""mkdocs hook: the table of cachekit's public names, rendered at build time from ``__all__``.

A page holding :data:`MARKER` gets a table with one row per name of ``cachekit.__all__``:
a link to where the name is documented (the module that defines it) and the first line of
its docstring. A name added to ``__all__`` shows up without editing any page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

import cachekit

MARKER = "<!-- cachekit:public-api -->"
_ROLES = f"{Path(__file__).with_name('sphinx_roles.py')}:SphinxRoles"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: put the table where a page holds the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(load_package()))


def load_package() -> griffe.Module:
    """cachekit as griffe sees it, with the same docstring rewriting as the API pages."""
    return griffe.load("cachekit", resolve_aliases=True, extensions=griffe.load_extensions(_ROLES))


def render(package: griffe.Module) -> str:
    """A Markdown table of ``cachekit.__all__``: linked name, kind, one-line summary."""
    rows = ["| Name | Kind | Summary |", "| --- | --- | --- |"]
    for name in cachekit.__all__:
        member = package[name]
        target = member.final_target if member.is_alias else member
        docstring = target.docstring.value if target.docstring else ""
        summary = docstring.split("\n\n", 1)[0].replace("\n", " ").replace("|", "\\|")
        rows.append(f"| [`{name}`][{target.path}] | {target.kind.value} | {summary} |")
    return "\n".join(rows) + "\n"
