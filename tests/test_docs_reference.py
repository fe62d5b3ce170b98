"""The reference pages cover the code: every module, every config field, every public name.

The site itself is built with ``mkdocs build --strict`` in CI; these checks catch what a
strict build lets through (a module nobody documents, a page left out of the nav) and test
the build hooks that generate the reference pages.
"""

from __future__ import annotations

import pkgutil
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

import cachekit
from cachekit.config import CacheConfig, DeclaredRegion, config_schema, load_config
from cachekit.policies import NonUniformPolicy, UniformPolicy, policy_kinds
from tests.docs_support import DOCS, ROOT, load_module

PAGES = {path.relative_to(DOCS).as_posix(): path.read_text(encoding="utf-8") for path in DOCS.rglob("*.md")}


def _load_hook(name: str) -> ModuleType:
    return load_module(DOCS / "hooks" / f"{name}.py", f"cachekit_docs_hook_{name}")


def _nav_pages(entry: Any) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in _nav_pages(value)]
    return [page for item in entry for page in _nav_pages(item)]


class _MkdocsLoader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!!python/name:`` tags name functions it need not import."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)
MKDOCS = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_MkdocsLoader)


def test_site_is_strict_and_offline() -> None:
    assert MKDOCS["strict"] is True
    plugins = [next(iter(plugin)) if isinstance(plugin, dict) else plugin for plugin in MKDOCS["plugins"]]
    assert set(plugins) <= {"search", "mkdocstrings"}, "plugins that fetch things (social cards, privacy) stay off"
    assert MKDOCS["theme"]["font"] is False


def test_every_page_is_in_the_nav() -> None:
    nav = _nav_pages(MKDOCS["nav"])
    assert sorted(set(PAGES) - set(nav)) == []
    assert len(nav) == len(set(nav)), "a page is listed twice"


def test_nav_has_the_sections_of_the_style_guide() -> None:
    top = [next(iter(entry)) for entry in MKDOCS["nav"]]
    assert top == [
        "Get started",
        "Concepts",
        "How-to",
        "Models",
        "Experiments",
        "Benchmarks",
        "Reference",
        "Plugin hooks",
        "Changelog",
    ]


@pytest.mark.parametrize("module", sorted(info.name for info in pkgutil.walk_packages(cachekit.__path__, "cachekit.")))
def test_every_module_has_an_api_reference(module: str) -> None:
    directives = re.findall(r"^::: ([\w.]+)", "\n".join(PAGES.values()), flags=re.MULTILINE)
    assert any(name == module or name.startswith(f"{module}.") for name in directives), (
        f"no page renders {module}: add docs/reference/<page>.md with '::: {module}' and put it in the nav"
    )


# --- the configuration reference, generated at build time -----------------------------------

config_reference = _load_hook("config_reference")
RENDERED = config_reference.render(config_schema())


def _rows(section_anchor: str) -> dict[str, list[str]]:
    """The table rows after the heading with ``{#section_anchor}``, by field name."""
    section = RENDERED.split(f"{{#{section_anchor}}}", 1)[1].split("\n#", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip("| `"): cells[1:] for cells in rows}


def test_config_page_holds_the_marker_the_hook_replaces() -> None:
    page = PAGES["reference/config.md"]
    assert config_reference.MARKER in page
    rendered = config_reference.on_page_markdown(page)
    assert config_reference.MARKER not in rendered and "## `CacheConfig`" in rendered


def test_config_reference_lists_every_field_of_every_model() -> None:
    assert set(_rows("cacheconfig")) == set(CacheConfig.model_fields)
    assert set(_rows("declaredregion")) == set(DeclaredRegion.model_fields)
    for kind, policy in policy_kinds().items():
        assert set(_rows(f"policy-{kind}")) == set(policy.model_fields), kind


def test_config_reference_shows_types_defaults_and_bounds() -> None:
    interval = _rows("policy-uniform")["interval"]
    assert interval[:3] == ["`int`", "`3`", "≥ 1"]
    assert interval[3].startswith(UniformPolicy.model_fields["interval"].description)
    assert _rows("policy-nonuniform")["power"][2] == "> 1.0, ≤ 4.0"
    assert _rows("policy-similarity")["max_consecutive_reuse"][:3] == ["`int` or `None`", "`null`", "≥ 1"]
    assert _rows("declaredregion")["entry"][1] == "required"
    assert '"kind": "uniform"' in _rows("cacheconfig")["policy"][1]  # a default made by a factory
    assert "[`similarity`](#policy-similarity)" in _rows("cacheconfig")["region_policies"][0]


# --- the public API table --------------------------------------------------------------------


def test_public_api_table_links_every_public_name() -> None:
    public_api = _load_hook("public_api")
    assert public_api.MARKER in PAGES["reference/cachekit.md"]
    table = public_api.render(public_api.load_package())
    linked = re.findall(r"^\| \[`(\w+)`\]\[(cachekit\.[\w.]+)\] \|", table, flags=re.MULTILINE)
    assert [name for name, _ in linked] == list(cachekit.__all__)
    assert all(target.endswith(f".{name}") and target != f"cachekit.{name}" for name, target in linked)
    assert "[`enable`][cachekit.api.enable] | function |" in table
    assert ":func:" not in table, "docstring roles are rewritten as in the API pages"


def test_literal_blocks_become_fenced_code() -> None:
    roles = _load_hook("sphinx_roles")
    indented = roles._fence_literal_blocks("Use it::\n\n    a = 1\n\n    b = 2\n\nThen more.")
    assert indented == "Use it:\n\n```python\na = 1\n\nb = 2\n```\n\nThen more."
    dedented = roles._fence_literal_blocks("Use it::\n\nwith x:\n    y()\nz()")
    assert dedented == "Use it:\n\n```python\nwith x:\n    y()\nz()\n```\n"


# --- what the pages state about the code -----------------------------------------------------


def test_policies_page_states_the_schedules_the_code_computes() -> None:
    page = " ".join(PAGES["concepts/policies.md"].split())
    uniform = UniformPolicy(interval=3).refresh_steps(50)
    nonuniform = NonUniformPolicy(interval=3, center=15, power=1.4).refresh_steps(50)
    assert len(uniform) == len(nonuniform) == 17
    assert f"refreshes at {', '.join(map(str, uniform))}: 17 refreshes, 33 reuses" in page
    assert f"it refreshes at {', '.join(map(str, nonuniform))}: the same 17 refreshes" in page


OWN_PAGES = [
    name for name in PAGES if not name.startswith("models/") and name not in ("experiments.md", "benchmarks.md")
]
YAML_BLOCKS = [
    pytest.param(block, id=f"{name}:{index}")
    for name in OWN_PAGES
    for index, block in enumerate(re.findall(r"^```yaml[^\n]*\n(.*?)^```", PAGES[name], flags=re.MULTILINE | re.DOTALL))
    if "--8<--" not in block
]


@pytest.mark.parametrize("block", YAML_BLOCKS)
def test_yaml_examples_in_the_pages_are_valid_configs(block: str) -> None:
    """Every config shown inline validates as a CacheConfig (included files are run elsewhere)."""
    assert isinstance(load_config(yaml.safe_load(block)), CacheConfig)
