"""Result files written whole or not at all: a temporary file in the same folder, then ``os.replace``.

A run stopped at any moment (Ctrl-C, ``SIGKILL``, a crash) leaves each result file as it
was before or as it is after the write, never half written: ``os.replace`` within one
folder is atomic. A killed writer can leave its temporary file behind (hidden, named
``.<name>.<random>.partial<suffix>``); :func:`remove_partials` clears them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PARTIAL = ".partial"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; it replaces ``path`` when the block ends.

    The temporary file sits in ``path``'s folder (created if need be), is created by the
    writer (so it gets the usual permissions) and keeps ``path``'s suffix, so writers that pick
    a format by suffix (``savefig``) work. An error or interrupt inside the
    block removes it and leaves ``path`` untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_PARTIAL}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def remove_partials(folder: Path) -> None:
    """Delete the temporary files a killed writer left anywhere under ``folder``."""
    for leftover in folder.rglob(f".*{_PARTIAL}*"):
        if leftover.is_file():
            leftover.unlink()
