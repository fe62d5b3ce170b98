"""Lazy package faces: a package's public names are imported when first used, not at import.

``import cachekit`` must stay cheap: the ``cachekit`` command starts with it, and the engine
pulls in torch and ``torch._dynamo`` (seconds). A package declares its public names once, as
``from module import name`` statements under a top-level ``if TYPE_CHECKING:``, which type
checkers, editors and the docs' griffe read as ordinary imports, and :func:`attach` gives it
the module ``__getattr__`` and ``__dir__`` (PEP 562) that import a name's module on its first
use. Scientific Python's ``lazy_loader.attach_stub`` works the same way from a stub file.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def declared_names(source: str) -> dict[str, tuple[str, str]]:
    """Each name bound by ``from module import name [as alias]`` under a top-level
    ``if TYPE_CHECKING:``, mapped to its module and its name there."""
    names = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                    names |= {alias.asname or alias.name: (statement.module, alias.name) for alias in statement.names}
    return names


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``__init__.py`` is ``init_file``.

    A declared name is imported from its module on first use, and a submodule
    (``cachekit.config``) on first access as an attribute; either is then kept on the package,
    so the lookup runs once. Anything else is the usual :class:`AttributeError`.
    """
    path = Path(init_file)
    names = declared_names(path.read_text(encoding="utf-8"))
    submodules = {info.name for info in pkgutil.iter_modules([str(path.parent)])}
    face = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in names:
            module, attribute = names[name]
            value = getattr(importlib.import_module(module), attribute)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(face, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(face)) | names.keys() | submodules)

    return __getattr__, __dir__
