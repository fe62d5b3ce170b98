"""Start-up: ``import cachekit`` and ``cachekit --help`` import no model library, plot library or
plugin, and every public name is still there on first use (:mod:`cachekit.lazy`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cachekit
from cachekit.lazy import declared_names

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").exists())
LIBRARIES = ["diffusers", "transformers", "matplotlib", "sklearn", "timm", *PLUGINS]


def imported_after(code: str, watched: list[str]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has in ``sys.modules`` after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([name for name in {watched!r} if name in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_import_cachekit_imports_no_library_no_plugin_and_not_torch() -> None:
    """tqdm stands for torch too: ``import torch`` imports it (``torch.hub``)."""
    assert imported_after("import cachekit", [*LIBRARIES, "tqdm", "torch", "pydantic"]) == []


def test_every_public_name_resolves_without_a_model_library() -> None:
    code = "import cachekit\nfor name in cachekit.__all__: getattr(cachekit, name)"
    assert imported_after(code, LIBRARIES) == []


def test_help_imports_no_torch() -> None:
    code = "from cachekit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(code, [*LIBRARIES, "torch", "pydantic", "pluggy"]) == []


def test_the_declared_names_are_the_public_names() -> None:
    declared = declared_names((ROOT / "cachekit" / "__init__.py").read_text(encoding="utf-8"))
    assert sorted(declared) == sorted(cachekit.__all__)
    for name, (module, attribute) in declared.items():
        assert getattr(cachekit, name) is getattr(sys.modules[module], attribute)
    assert set(cachekit.__all__) <= set(dir(cachekit))


def test_submodules_are_attributes_and_unknown_names_are_attribute_errors() -> None:
    assert cachekit.errors.listing is cachekit.listing
    with pytest.raises(AttributeError, match="^module 'cachekit' has no attribute 'enabled'$"):
        cachekit.enabled  # noqa: B018
    assert not hasattr(cachekit, "enabled")


def test_declared_names_reads_only_the_type_checking_block() -> None:
    source = (
        "from a import outside\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.mod import one, two as deux\n"
        "    import pkg.other\n"
        "if OTHER:\n"
        "    from b import hidden\n"
    )
    assert declared_names(source) == {"one": ("pkg.mod", "one"), "deux": ("pkg.mod", "two")}
