"""The plugin tutorial's example package (docs_src/plugin_tutorial) works as the tutorial says.

The package is imported from its folder, not installed: its plugin is registered for each
test and unregistered afterwards, as the entry point would register it once installed.
Its own test classes run here too, the conformance suite included.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Iterator

import pytest

import cachekit
from cachekit.plugin_manager import ENTRY_POINT_GROUP, load_plugins, register_plugin, unregister_plugin
from tests.docs_support import DOCS_SRC, load_module

TUTORIAL = DOCS_SRC / "plugin_tutorial"
if str(TUTORIAL) not in sys.path:
    sys.path.insert(0, str(TUTORIAL))

import cachekit_tinynet.plugin  # noqa: E402  (importable once its folder is on the path)

tutorial_tests = load_module(TUTORIAL / "tests" / "test_tinynet.py", "cachekit_tinynet_tutorial_tests")


@pytest.fixture(autouse=True)
def tinynet_plugin() -> Iterator[str]:
    """The tutorial's plugin, registered for one test."""
    name = register_plugin(cachekit_tinynet.plugin, name="cachekit-tinynet")
    try:
        yield name
    finally:
        unregister_plugin(name)


class TestTutorialDefaultRegion(tutorial_tests.TestTinyNet):
    """The tutorial's own checks on the default region: conformance and the plugin's."""


class TestTutorialAllBlocks(tutorial_tests.TestTinyNetAllBlocks):
    """The tutorial's conformance checks on its second region."""


def test_enable_finds_the_plugins_regions() -> None:
    model = cachekit_tinynet.tinynet()
    offered = load_plugins().hook.cachekit_regions(model=model)
    assert [region.name for region in offered] == ["inner-blocks", "all-blocks"]
    with cachekit.enable(model, {"regions": ["all-blocks"]}) as handle:
        assert handle.regions["all-blocks"].modules == ("blocks.0", "blocks.1", "blocks.2", "blocks.3")


def test_unregistered_plugin_offers_nothing(tinynet_plugin: str) -> None:
    unregister_plugin(tinynet_plugin)
    try:
        with pytest.raises(cachekit.RegionNotFoundError, match="declare them"):
            cachekit.enable(cachekit_tinynet.tinynet())
    finally:
        register_plugin(cachekit_tinynet.plugin, name=tinynet_plugin)


def test_entry_point_names_the_plugin_module() -> None:
    """What ``pip install`` would register is the module these tests register by hand."""
    project = tomllib.loads((TUTORIAL / "pyproject.toml").read_text(encoding="utf-8"))
    entry_points = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert list(entry_points.values()) == ["cachekit_tinynet.plugin"]
    assert importlib.import_module(entry_points["tinynet"]) is cachekit_tinynet.plugin
    assert project["tool"]["setuptools"]["packages"] == ["cachekit_tinynet"]
