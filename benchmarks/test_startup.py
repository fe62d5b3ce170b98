"""Start-up: ``import cachekit`` and ``cachekit --help`` against ``import torch``, each in a fresh
interpreter.

Run: ``pytest benchmarks/test_startup.py --benchmark-enable -s``. Each command runs as a
subprocess in interleaved rounds (torch, cachekit, help, first use, torch, ...) and is timed
by the CPU seconds (user + system) of the finished child: on an idle machine that is its
wall time (start-up runs on one thread), and it barely moves when other jobs load the
machine. The medians, with the min-max spread, are printed and kept in ``extra_info``.
``cachekit --help`` may cost at most 0.5 s beyond torch's own import. ``--device`` changes
nothing here: no model runs, and start-up is the same whatever device comes later.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Callable

from benchmarks.sidebyside import interleaved_times

ROUNDS = 7
HELP_BUDGET_S = 0.5
COMMANDS = {
    "import torch": ["-c", "import torch"],
    "import cachekit": ["-c", "import cachekit"],
    "cachekit --help": ["-m", "cachekit.cli", "--help"],
    "first use (cachekit.enable)": ["-c", "import cachekit; cachekit.enable"],
}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    times = os.times()
    return times.children_user + times.children_system


def runner(arguments: list[str]) -> Callable[[], None]:
    """Run ``python arguments`` in a fresh interpreter that sees this one's ``sys.path``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return lambda: subprocess.run([sys.executable, *arguments], env=env, capture_output=True, check=True)


def test_startup_against_import_torch(benchmark):
    candidates = {name: runner(arguments) for name, arguments in COMMANDS.items()}
    times = interleaved_times(candidates, rounds=ROUNDS, clock=children_cpu)
    benchmark.pedantic(candidates["cachekit --help"], rounds=1, iterations=1)
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch_s = medians["import torch"]
    print(f"\nstart-up, CPU s of the child process: median of {ROUNDS} interleaved rounds (min-max)")
    for name, values in times.items():
        beyond = "" if name == "import torch" else f"  {medians[name] - torch_s:+.3f} s beyond import torch"
        print(f"  {name:<28}{medians[name]:7.3f} s ({min(values):.3f}-{max(values):.3f}){beyond}")
        benchmark.extra_info[name] = {"median_s": medians[name], "min_s": min(values), "max_s": max(values)}
    assert medians["cachekit --help"] - torch_s <= HELP_BUDGET_S
