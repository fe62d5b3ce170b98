"""The built site needs nothing from outside: no page loads a script, a stylesheet or a font from
another host, and the diagrams are drawn by the mermaid build kept in the site."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.docs_support import ROOT

pytestmark = pytest.mark.slow  # one strict build of the whole site: about 10 s on an idle core

MERMAID = "assets/javascripts/mermaid.min.js"
NAVIGATION = {"canonical", "prev", "next", "alternate"}
"""``<link>`` relations a browser does not fetch while showing the page."""


class Loads(HTMLParser):
    """What a page makes the browser fetch: script sources and linked resources, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.diagrams = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"] or "")
        elif tag == "link" and not set((found.get("rel") or "").split()) & NAVIGATION:
            self.links.append(found.get("href") or "")
        elif tag == "pre" and "mermaid" in (found.get("class") or "").split():
            self.diagrams += 1


def external(url: str) -> bool:
    return bool(re.match(r"(https?:)?//", url))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)]
    done = subprocess.run(build, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, Loads]:
    parsed = {}
    for path in sorted(site.rglob("*.html")):
        parsed[path.relative_to(site).as_posix()] = loads = Loads()
        loads.feed(path.read_text(encoding="utf-8"))
    return parsed


def test_no_page_loads_a_script_or_stylesheet_from_another_host(pages: dict[str, Loads]) -> None:
    fetched = {name: [url for url in [*page.scripts, *page.links] if external(url)] for name, page in pages.items()}
    assert {name: urls for name, urls in fetched.items() if urls} == {}
    assert all(any(link.endswith("assets/stylesheets/extra.css") for link in page.links) for page in pages.values())


def test_no_stylesheet_imports_from_another_host(site: Path) -> None:
    """Fonts and styles come with the theme (``font: false``); data: URIs are not fetches."""
    imports = re.compile(r"@import|url\(\s*[\"']?(https?:)?//")
    assert [path.name for path in site.rglob("*.css") if imports.search(path.read_text(encoding="utf-8"))] == []


def test_pages_with_diagrams_load_the_local_mermaid_before_the_theme(pages: dict[str, Loads]) -> None:
    """The theme's bundle fetches mermaid from a CDN unless ``mermaid`` is already defined."""
    drawn = {name for name, page in pages.items() if page.diagrams}
    assert {"concepts/index.html", "concepts/architecture/index.html"} <= drawn
    for name, page in pages.items():
        local = [index for index, src in enumerate(page.scripts) if src.endswith(MERMAID)]
        bundle = next(index for index, src in enumerate(page.scripts) if "/bundle." in src)
        assert len(local) == (name in drawn) and all(index < bundle for index in local), name


def test_the_local_mermaid_is_the_major_version_the_theme_asks_for(site: Path) -> None:
    bundle = next((site / "assets" / "javascripts").glob("bundle.*.min.js")).read_text(encoding="utf-8")
    wanted = re.search(r"/mermaid@(\d+)/dist/mermaid\.min\.js", bundle)
    # mermaid.getVersion() reads the {version: "..."} object of the build
    shipped = re.search(r'\{version:"(\d+)\.\d+\.\d+"\}', (site / MERMAID).read_text(encoding="utf-8"))
    assert wanted and shipped and wanted.group(1) == shipped.group(1)
