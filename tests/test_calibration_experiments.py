"""Calibration from experiment configs: ``cachekit calibrate`` end to end, and calibrating in a sweep."""

from __future__ import annotations

import json

import pytest
import yaml

from cachekit import ConfigError
from cachekit.calibration.budget import Budget
from cachekit.calibration.file import CalibrationFile
from cachekit.cli import main
from cachekit.experiments import load_experiment, run_experiment
from tests.docs_support import ROOT
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

BUDGET = {"refreshes": 3}
TUNING = {"seed": 500, "num_samples": 2, "setting": {"branch": 0, "forecast": "linear"}, "budget": BUDGET}


def experiment(**calibration: object) -> dict:
    """A tiny UNet sweep: uniform against a calibrated entry, both at branch 0."""
    return {
        "model": {"builder": "tiny-unet"},
        "sampling": {"steps": 6, "num_samples": 2, "batch_size": 2},
        "calibration": {**TUNING, **calibration},
        "policies": [
            {"kind": "uniform", "interval": 2, "branch": 0},
            {"name": "tuned", "kind": "calibrated", "budget": BUDGET, "branch": 0},
        ],
    }


@pytest.mark.slow
def test_cachekit_calibrate_writes_the_file_and_heatmap_and_prints_the_schedule(tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({**experiment(), "output_dir": str(tmp_path / "out")}))
    assert main(["calibrate", str(config)]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "out" / "calibration" / "calibration.json"
    calibration = CalibrationFile.load(path)
    steps = calibration.regions["branch0"].schedule.steps
    assert f"branch0: refresh at {list(steps)}" in printed and str(path) in printed
    trust = calibration.regions["branch0"].drift_trust
    assert f"drift trust {trust.trust:.2f} on probe {trust.probe!r}" in printed
    assert len(steps) == 3 and calibration.num_steps == 6 and calibration.forecast.label == "linear"
    assert calibration.samples["seeds"] == [500, 501] and calibration.scheduler == "DDIMScheduler"
    assert path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_calibrate_refuses_a_config_without_budget_or_with_shared_seeds(tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({**experiment(budget=None), "output_dir": str(tmp_path)}))
    assert main(["calibrate", str(config), "--no-plot"]) == 2
    assert "calibration.budget is missing" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"share 1 seeds \(1\); a schedule must be scored on samples it was not"):
        load_experiment(experiment(seed=1))
    without = {key: value for key, value in experiment().items() if key != "calibration"}
    with pytest.raises(ConfigError, match="needs a 'calibration' section"):
        load_experiment(without)


@pytest.mark.slow
def test_a_sweep_calibrates_on_the_tuning_seeds_and_evaluates_on_the_others(tmp_path, capsys):
    results = run_experiment(experiment(), tmp_path, progress=False)
    assert "calibrating 'tuned' on tuning seeds 500, 501; evaluating on held-out seeds 0, 1" in capsys.readouterr().err
    document = json.loads((tmp_path / "results.json").read_text())
    path = tmp_path / "calibration" / "tuned.json"
    assert document["calibration"] == {
        "tuning_seeds": [500, 501],
        "evaluation_seeds": [0, 1],
        "files": {"tuned": str(path)},
    }
    calibration = CalibrationFile.load(path)
    assert calibration.samples["seeds"] == [500, 501] and calibration.forecast.label == "none"
    row = next(row for row in results.rows if row["setting"] == "tuned")
    assert row["refreshes"] == 3 and row["samples"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "docs_src/calibrate/digits_unet.yaml",
        "examples/digits_unet_calibrated.yaml",
        "examples/digits_dit_calibrated.yaml",
    ],
)
def test_the_shown_calibration_configs_are_valid(path):
    config = load_experiment(ROOT / path)
    assert config.calibration is not None and config.calibration.budget == Budget(refreshes=5)
    assert config.tuning().requests()[0].seeds[0] == 30000


def test_cachekit_calibrate_searches_when_the_section_asks(tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    search = {"evaluations": 6, "radius": 2}
    config.write_text(yaml.safe_dump({**experiment(search=search), "output_dir": str(tmp_path / "out")}))
    assert main(["calibrate", str(config), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    calibration = CalibrationFile.load(tmp_path / "out" / "calibration" / "calibration.json")
    record = calibration.search
    assert record is not None and record.evaluations <= 6 and record.radius == 2
    assert record.output_error <= record.start_output_error
    assert f"schedule search: {record.evaluations} runs of the tuning samples" in printed
    with pytest.raises(ConfigError, match="evaluations"):
        load_experiment(experiment(search={"evaluations": 0}))


def test_a_sweep_entry_can_search_its_calibration():
    entry = {"name": "searched", "kind": "calibrated", "budget": BUDGET, "search": {"evaluations": 4}, "branch": 0}
    config = load_experiment({**experiment(), "policies": [entry]})
    policy = config.settings[0].cache.policy
    assert policy.search is not None and policy.search.evaluations == 4
    with pytest.raises(ConfigError, match="'search' refines a schedule cachekit run calibrates"):
        load_experiment({**experiment(), "policies": [{**entry, "budget": None, "file": "x.json"}]})
