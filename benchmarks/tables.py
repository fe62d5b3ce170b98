"""The benchmarks' tables: printed aligned, and written as Markdown where ``--tables DIR`` says.

``--tables`` is :mod:`benchmarks.conftest`'s option (``CACHEKIT_BENCH_TABLES`` sets its
default); each table goes to ``DIR/<name>.md``, its title as a heading.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

TABLES_ENV = "CACHEKIT_BENCH_TABLES"

_folder: list[Path] = []


def select(folder: str | None) -> None:
    """Write tables to ``folder`` from now on (created when needed); ``None``: print them only."""
    _folder[:] = [] if folder is None else [Path(folder)]


def folder() -> Path | None:
    """The folder selected with ``--tables``, or ``None``."""
    return _folder[0] if _folder else None


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns aligned left, the others right."""
    rule = ["---" if index < left else "---:" for index in range(len(headers))]
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def emit(name: str, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> Path | None:
    """Print ``title`` and the table aligned; write it to ``<folder>/<name>.md`` when a folder is
    selected, and return that path (``None`` otherwise)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    print(f"\n{title}")
    for line in (headers, *rows):
        cells = zip(line, widths, strict=True)
        print("  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
    if not _folder:
        return None
    path = _folder[0] / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"## {title}\n\n{markdown(headers, rows, left)}", encoding="utf-8")
    return path
