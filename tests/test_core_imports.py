"""The import graph: no circle in cachekit/ or plugins/, and the core imports no model library or plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").exists())


def _modules() -> dict[str, Path]:
    found = {}
    for base, prefix in ((ROOT, ""), (ROOT / "plugins", "")):
        for path in (base / "cachekit").rglob("*.py") if base == ROOT else base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[prefix + ".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports (lazy and TYPE_CHECKING imports too); a package face that
    only re-exports names ties nothing."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.name == "__init__.py" and not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in tree.body):
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *([base] if base else [])]
                )
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in names:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


def _external(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_import_circle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name.split(".")[0] == "cachekit"))
def test_the_core_imports_no_model_library_no_plugin_and_no_experiments(name: str) -> None:
    layer = name.startswith("cachekit.experiments")  # the layer above may draw plots (matplotlib, lazily)
    forbidden = {"diffusers", "transformers", "timm", *PLUGINS} | (set() if layer else {"matplotlib"})
    assert not _external(MODULES[name]) & forbidden
    if not layer and name not in ("cachekit", "cachekit.cli"):
        assert not {target for target in _imports(name, MODULES[name]) if target.startswith("cachekit.experiments")}
