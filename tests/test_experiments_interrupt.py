"""Runs that stop cleanly: Ctrl-C, a killed process, atomic result files, and reruns that continue.

The end-to-end tests run ``cachekit run`` as a subprocess on the tiny UNet, kill it (SIGINT
or SIGKILL) as soon as the first setting's results are on disk, check that every file left
is whole, and run again: the results equal an uninterrupted run's but for the timing.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from cachekit_diffusers.calling import DiffusersCaller

from cachekit.cli import main
from cachekit.experiments import ExperimentError, run_experiment
from cachekit.experiments.atomic_file import atomic_path, remove_partials, write_text
from cachekit.experiments.results import ResultFiles
from cachekit.experiments.speedup import SPEED_COLUMNS
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).parents[1]
SWEEP = {
    "model": {"builder": "tiny-unet"},
    "sampling": {"steps": 6, "num_samples": 4, "batch_size": 2},
    "policies": [{"grid": {"interval": [2, 3]}, "branch": 0}],
}
SETTINGS = 3  # the baseline and two intervals
TIMING = {"loop_seconds", "speedup", *SPEED_COLUMNS}


def untimed(rows: list[dict]) -> list[dict]:
    """The rows without their timing columns: what two runs of one config must agree on."""
    return [{key: value for key, value in row.items() if key not in TIMING} for row in rows]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return path


@pytest.fixture(scope="module")
def uninterrupted(config_file, tmp_path_factory):
    return run_experiment(config_file, tmp_path_factory.mktemp("uninterrupted"), progress=False)


def assert_whole(out: Path) -> list[dict]:
    """Every result file in ``out`` reads back completely; returns the saved rows."""
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))["rows"]
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        assert [row["setting"] for row in csv.DictReader(handle)] == [row["setting"] for row in rows]
    for samples in (out / "samples").glob("*.pt"):
        assert torch.load(samples, weights_only=True).shape[0] == SWEEP["sampling"]["num_samples"]
    return rows


def default_ctrl_c() -> None:
    """SIGINT back to its default in the child: a shell's background job (CI) starts with it
    ignored, and Python keeps an ignored SIGINT instead of raising KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def saved_rows(out: Path) -> int:
    try:
        return len(json.loads((out / "results.json").read_text(encoding="utf-8"))["rows"])
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (a partial file is never read here)
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_run_killed_mid_setting_leaves_whole_files_and_a_rerun_finishes_it(
    signum, config_file, uninterrupted, tmp_path
):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "cachekit.cli", "run", str(config_file), "--out", str(out), "--quiet"]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_ctrl_c,
    )
    try:
        deadline = time.monotonic() + 120
        while saved_rows(out) == 0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    saved = assert_whole(out)
    assert 1 <= len(saved) < SETTINGS, "the run was not stopped in the middle"
    if signum == signal.SIGINT:
        assert process.returncode == 130 and "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == (
            f"interrupted: {len(saved)} of {SETTINGS} settings saved in {out}; run again to continue"
        )
    else:
        assert process.returncode == -signal.SIGKILL

    rerun = run_experiment(config_file, out, progress=False)
    assert untimed(rerun.rows) == untimed(uninterrupted.rows)
    assert rerun.rows[: len(saved)] == saved  # what was saved is kept, timing included
    files, reference = ResultFiles(out), ResultFiles(uninterrupted.output_dir)
    for row in rerun.rows:
        assert torch.equal(files.load_samples(row["setting"]), reference.load_samples(row["setting"]))
    assert_whole(out)
    assert not list(out.rglob(".*partial*")) and (out / "pareto.png").is_file()


def test_ctrl_c_prints_one_line_exits_130_and_a_rerun_says_what_it_skips(
    config_file, uninterrupted, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    calls = []
    call = DiffusersCaller.__call__

    def interrupted_on_the_eighth_call(self, pipeline, request):
        calls.append(request)
        if len(calls) == 8:  # the warm-up, the baseline's 2 batches and 2 repeats, then inside the first setting
            raise KeyboardInterrupt
        return call(self, pipeline, request)

    monkeypatch.setattr(DiffusersCaller, "__call__", interrupted_on_the_eighth_call)
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 130
    printed = capsys.readouterr()
    assert printed.err == f"interrupted: 1 of {SETTINGS} settings saved in {out}; run again to continue\n"
    assert printed.out == ""
    assert [row["setting"] for row in assert_whole(out)] == ["none"]

    monkeypatch.setattr(DiffusersCaller, "__call__", call)
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.err == (
        f"skipping 1 of {SETTINGS} settings saved in {out} by an earlier run: 'none' (--fresh runs them again)\n"
    )
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))["rows"]
    assert untimed(rows) == untimed(uninterrupted.rows)


def test_a_write_interrupted_midway_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "results.json"
    write_text(path, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as temporary:
        temporary.write_text("half of the ne")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]
    write_text(path, "new")
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path]


def test_partial_files_a_killed_writer_left_are_removed(tmp_path):
    (tmp_path / "grids").mkdir()
    leftovers = [tmp_path / ".results.json.0a1b.partial.json", tmp_path / "grids" / ".none.png.99.partial.png"]
    for leftover in leftovers:
        leftover.write_text("half")
    kept = tmp_path / "results.json"
    kept.write_text("{}")
    remove_partials(tmp_path)
    assert not any(leftover.exists() for leftover in leftovers) and kept.exists()


def test_an_unreadable_results_file_is_a_clear_error(config_file, tmp_path):
    (tmp_path / "results.json").write_text('{"rows": [{"setting": "no')
    with pytest.raises(ExperimentError, match=r"cannot read the earlier results '.*results.json' .*--fresh"):
        run_experiment(config_file, tmp_path, progress=False)
