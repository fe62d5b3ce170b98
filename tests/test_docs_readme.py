"""The README states what the code, CI and the tested examples do."""

from __future__ import annotations

import re
import tomllib

from cachekit.cli import build_parser
from tests.docs_support import DOCS_SRC, ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(text: str) -> list[str]:
    """The ``&&``-joined steps of every line of the README's set-up block."""
    block = text.split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [step.strip() for line in block.splitlines() if not line.startswith("#") for step in line.split("&&")]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    tests = [step for step in _commands(README) if "pytest" in step or '".[dev]"' in step]
    assert tests == ['.venv/bin/pip install -e ".[dev]"', ".venv/bin/python -m pytest"]
    assert '.venv/bin/pip install -q -e ".[dev]"' in ci and ".venv/bin/python -m pytest ||" in ci


def test_the_suite_prints_the_slowest_tests_the_readme_promises() -> None:
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    slowest = re.search(r"--durations=(\d+)", addopts["addopts"])
    assert slowest and f"It prints its {slowest.group(1)} slowest tests" in " ".join(README.split())


def test_the_demo_folder_is_the_demo_default() -> None:
    folder = build_parser().parse_args(["demo"]).out
    assert f"writes into `./{folder}/`" in " ".join(README.split())


def test_the_hit_map_comment_has_the_totals_of_the_get_started_run() -> None:
    """Both are Stable Diffusion 1.5 (PNDM), ``uniform`` interval 3 on ``branch0``, 50 steps; the
    Get started run is tested (tests/test_docs_examples.py)."""
    totals = re.search(r"\d+ refreshes, \d+ reuses", (DOCS_SRC / "get_started.txt").read_text(encoding="utf-8"))
    comment = re.search(r"print\(handle\.stats\.hit_map\(\)\)\s*#(.*)", README)
    assert totals and comment and totals.group(0) in comment.group(1)
