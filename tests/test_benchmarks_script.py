"""The GPU benchmark script, run as a smoke test on the CPU: ``scripts/gpu_benchmarks.sh
--device cpu --tiny`` writes the UNet and DiT tables as Markdown, each speedup beside the share
of its FLOP ceiling; the benchmarks' device options refuse what is not there.

The smoke test runs the UNet benchmark against DeepCache and the Flux-shaped peers with a few
of their settings; the other two benchmarks (plain UNet, PixArt-shaped) share their code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import tables
from benchmarks.device import Target, parse

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_benchmarks.sh"


SETTINGS = ("TaylorSeer", "TaylorSeer lite", "FirstBlockCache 0.1", "MagCache K=3", "uniform 4", "uniform 4, linear")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}",
        "CACHEKIT_DIT_BENCH_SETTINGS": "|".join(f" {setting}$" for setting in SETTINGS),
    }
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.slow
def test_the_script_writes_its_tables_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    result = run_script("--device", "cpu", "--tiny", str(tmp_path), "--", "-k", "deepcache or flux_shaped")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = {path.name: path.read_text(encoding="utf-8") for path in tmp_path.glob("*.md")}
    assert (tmp_path / "dit_peers.png").exists() and (tmp_path / "dit_peers.json").exists()
    expected = {"unet_speed_deepcache.md", "dit_peers_flux.md", "dit_peers_flux_verdicts.md"}
    assert expected <= set(written), sorted(written)
    for name in ("unet_speed_deepcache.md", "dit_peers_flux.md"):
        lines = written[name].splitlines()
        assert lines[0].startswith("## ") and "on cpu, float32" in lines[0], lines[0]
        header = [cell.strip() for cell in lines[2].strip("|").split("|")]
        assert "speedup" in header and "of ceiling" in header, header
        assert len(lines) > 6, f"{name}: too few rows"
    assert "| diffusers TaylorSeer |" in written["dit_peers_flux_verdicts.md"]
    peers = written["dit_peers_flux.md"]
    for setting in SETTINGS:
        assert f"| {setting} |" in peers, setting
    assert "DeepCache uniform 3" in written["unet_speed_deepcache.md"]


def test_a_device_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown --dtype 'float8'; known: float32, float16, bfloat16"):
        parse("cpu", "float8")
    with pytest.raises(ValueError, match="run on 'cpu' or 'cuda'"):
        parse("meta", "float32")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device here"):
            parse("cuda", "float32")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_the_script_refuses_cuda_without_a_gpu() -> None:
    """pytest's usage error (exit 4) before any benchmark runs, naming what is missing."""
    result = run_script("--device", "cuda", "--tiny", "unused")
    assert result.returncode == 4 and "sees no CUDA device here" in result.stderr, result.stderr[-2000:]


def test_inputs_follow_the_target_and_tables_are_markdown(tmp_path: Path) -> None:
    target = Target(torch.device("cpu"), torch.bfloat16)
    moved = target.inputs({"x": [torch.ones(2), (torch.arange(3),)], "n": 1})
    assert moved["x"][0].dtype == torch.bfloat16 and moved["x"][1][0].dtype == torch.int64 and moved["n"] == 1
    assert isinstance(moved["x"][1], tuple)
    assert target.seconds(lambda: sum(range(1000)), lambda: 5.0) == 0.0  # the clock given is the one read
    tables.select(str(tmp_path))
    try:
        path = tables.emit("t", "a title", ("setting", "speedup"), [["none", "1.00x"]])
    finally:
        tables.select(None)
    assert path is not None
    assert path.read_text(encoding="utf-8") == "## a title\n\n| setting | speedup |\n| --- | ---: |\n| none | 1.00x |\n"
