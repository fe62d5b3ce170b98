"""Experiment configs: grid expansion onto policies and regions, validation errors, example files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cachekit import ConfigError, UniformPolicy
from cachekit.experiments import BASELINE, ExperimentConfig, load_experiment

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def experiment(*policies: dict, **extra: object) -> ExperimentConfig:
    return load_experiment({"model": {"source": "digits-unet"}, "policies": list(policies), **extra})


def test_grid_is_the_cartesian_product_of_policy_fields_and_branches():
    config = experiment({"grid": {"interval": [2, 3, 5], "branch": [0, 1]}})
    got = [(s.cache.policy.interval, s.cache.regions) for s in config.settings]
    assert got == [(i, (f"branch{b}",)) for i in (2, 3, 5) for b in (0, 1)]
    assert all(isinstance(s.cache.policy, UniformPolicy) for s in config.settings)
    assert config.settings[0].name == "uniform interval=2 @branch0"


def test_fixed_keys_apply_to_every_grid_point_and_cache_keys_pass_through():
    config = experiment(
        {
            "name": "sim",
            "kind": "similarity",
            "probe": "entry_input",
            "regions": "blocks[1:5]",
            "grid": {"threshold": [0.1, 0.2]},
            "cache": {"num_steps": 20},
        }
    )
    assert [s.name for s in config.settings] == ["sim[threshold=0.1]", "sim[threshold=0.2]"]
    for setting, threshold in zip(config.settings, (0.1, 0.2), strict=True):
        assert setting.cache.policy.kind == "similarity"
        assert setting.cache.policy.threshold == threshold
        assert setting.cache.regions == ("blocks[1:5]",)
        assert setting.cache.num_steps == 20


def test_an_entry_without_grid_is_one_setting_and_regions_can_be_swept():
    config = experiment({"kind": "nonuniform", "interval": 5, "branch": 0}, {"grid": {"regions": ["a", ["b", "c"]]}})
    assert [s.name for s in config.settings] == ["nonuniform interval=5 @branch0", "uniform @a", "uniform @b+c"]
    assert config.settings[2].cache.regions == ("b", "c")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"grid": {"intervall": [2]}},
            "key 'intervall' is not a field of policy kind 'uniform' (did you mean 'interval'?)",
        ),
        ({"kind": "unifrom"}, "unknown policy kind 'unifrom' (did you mean 'uniform'?)"),
        ({"interval": 0}, "policy.interval: Input should be greater than or equal to 1 (got 0)"),
        ({"interval": 2, "grid": {"interval": [3]}}, "'interval' set both as a fixed key and in 'grid'"),
        ({"grid": {"interval": []}}, "grid keys 'interval' have no values"),
        ({"cache": {"policy": {"kind": "uniform"}}}, "'cache' may not set 'policy'"),
        ({"grid": {"branch": [0, "deep"]}}, "'branch' must be a skip-branch index 0, 1, 2, ... (got 'deep')"),
        ({"branch": -1}, "policies.1.branch: Input should be greater than or equal to 0"),
        (
            {"kind": "similarity", "threshold": 0.1, "interval": 2},
            "keys allowed here: 'branch', 'cache', 'error_budget', 'fit', 'forecast', 'grid'",
        ),
        (
            {"regions": [{"name": "m", "entry": "blocks.1"}]},
            "goes under 'cache.declare' and is named in 'regions': cache.declare: [{name: m, entry: blocks.1}]",
        ),
    ],
)
def test_bad_policy_entries_name_the_entry_and_what_is_allowed(entry, message):
    with pytest.raises(ConfigError) as error:
        experiment({"interval": 2}, entry)
    assert "policies.1" in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"source": "digits-unet", "builder": "tiny-unet"}}, "give exactly one of 'source'"),
        ({"model": {}}, "give exactly one of 'source'"),
        ({"sampling": {"prompts": ["a"], "class_labels": [1]}}, "at most one of 'prompts' and 'class_labels'"),
        ({"sampling": {"call": {"generator": 1}}}, "'call' may not set 'generator'"),
        ({"sampling": {"steps": 0}}, "sampling.steps: Input should be greater than or equal to 1"),
        ({"sampling": {"stepz": 3}}, "sampling.stepz: unknown key"),
        ({"policies": []}, "policies: List should have at least 1 item"),
        ({"policies": [{"interval": 2}, {"interval": 2}]}, "setting names 'uniform interval=2' appear twice"),
        ({"policies": [{"name": BASELINE}]}, "are reserved"),
        ({"plot": {"grid_samples": 0}}, "plot.grid_samples"),
    ],
)
def test_bad_experiment_fields_are_named(changes, message):
    data = {"model": {"source": "digits-unet"}, "policies": [{"interval": 3}], **changes}
    with pytest.raises(ConfigError, match="invalid ExperimentConfig") as error:
        load_experiment(data)
    assert message in str(error.value)


def test_seed_sets_are_reproducible_and_the_second_is_disjoint():
    sampling = experiment({"interval": 2}, sampling={"num_samples": 4, "seed": 10}).sampling
    assert sampling.seed_list() == [10, 11, 12, 13]
    assert sampling.seed_list(second_set=True) == [14, 15, 16, 17]
    explicit = experiment({"interval": 2}, sampling={"seeds": [7, 3]}).sampling
    assert explicit.seed_list() == [7, 3]
    assert not set(explicit.seed_list(second_set=True)) & {7, 3}


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_files_load_in_each_format_and_the_stem_names_the_experiment(tmp_path, suffix):
    text = {
        ".yaml": "model:\n  source: digits-unet\npolicies:\n  - grid: {interval: [2, 3]}\n",
        ".toml": '[model]\nsource = "digits-unet"\n[[policies]]\ngrid = {interval = [2, 3]}\n',
        ".json": json.dumps({"model": {"source": "digits-unet"}, "policies": [{"grid": {"interval": [2, 3]}}]}),
    }[suffix]
    path = tmp_path / f"sweep{suffix}"
    path.write_text(text)
    config = load_experiment(path)
    assert config.name == "sweep"
    assert len(config.settings) == 2
    assert config.resolved_output_dir() == Path("runs/sweep")


def test_a_bad_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {source: digits-unet}\npolicies: [{kind: nope}]\n")
    with pytest.raises(ConfigError, match=r"invalid ExperimentConfig in '.*bad.yaml'"):
        load_experiment(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_config_validates(path):
    config = load_experiment(path)
    assert config.settings, f"{path.name} defines no setting"


def test_the_examples_cover_the_digits_sweeps_and_real_models():
    names = {path.stem for path in EXAMPLES}
    assert {"digits_unet_sweep", "digits_dit_sweep", "sd15", "sdxl", "flux", "pixart"} <= names


def test_the_config_shown_on_the_experiments_page_validates_and_matches_the_example():
    page = (Path(__file__).parents[1] / "docs" / "experiments.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", page, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "the Experiments page shows no config"
    shown = load_experiment(yaml.safe_load(blocks[0]))
    example = load_experiment(EXAMPLES[0].parent / "digits_unet_sweep.yaml")
    assert [s.name for s in shown.settings] == [s.name for s in example.settings]
    assert shown.sampling == example.sampling and shown.model == example.model
