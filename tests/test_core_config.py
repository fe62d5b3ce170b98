"""Configs: every way to give one, and a clear error for every way to get one wrong."""

from __future__ import annotations

import json

import pytest
import torch

import cachekit
from cachekit import CacheConfig, ConfigError, RegionNotFoundError, UniformPolicy, load_config
from cachekit.config import config_schema
from tests.models import MIDDLE, tiny_transformer

EXPECTED = CacheConfig(policy=UniformPolicy(interval=4), regions=("a",))


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".yaml", "policy: {kind: uniform, interval: 4}\nregions: [a]\n"),
        (".toml", 'regions = ["a"]\n[policy]\nkind = "uniform"\ninterval = 4\n'),
        (".json", json.dumps({"policy": {"kind": "uniform", "interval": 4}, "regions": ["a"]})),
    ],
)
def test_config_files(tmp_path, suffix, text):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    assert load_config(path) == EXPECTED
    assert load_config(str(path)) == EXPECTED


def test_config_from_mapping_model_policy_and_kind():
    assert load_config({"policy": {"kind": "uniform", "interval": 4}, "regions": ["a"]}) == EXPECTED
    assert load_config(EXPECTED) is EXPECTED
    assert load_config(UniformPolicy(interval=4)).policy == UniformPolicy(interval=4)
    assert load_config("nonuniform").policy.kind == "nonuniform"
    assert load_config(None) == CacheConfig() and CacheConfig().policy == UniformPolicy(interval=3)


def test_config_round_trips_through_dump():
    config = load_config({"policy": {"kind": "similarity", "threshold": 0.2}, "region_policies": {"x": "uniform"}})
    assert load_config(config.model_dump()) == config


@pytest.mark.parametrize(
    "data,expected",
    [
        (
            {"policy": {"kind": "unifrom"}},
            r"policy\.kind: unknown policy kind 'unifrom' \(did you mean 'uniform'\?\); known kinds: .*'similarity'",
        ),
        (
            {"policy": {"kind": "uniform", "interval": 0}},
            r"policy\.interval: Input should be greater than or equal to 1 \(got 0\)",
        ),
        ({"policy": {"kind": "uniform", "intervl": 2}}, r"policy\.intervl: unknown key; did you mean 'interval'\?"),
        ({"policy": {"kind": "similarity", "threshold": -1}}, r"policy\.threshold: Input should be greater than 0"),
        (
            {"policy": {"kind": "similarity", "probe": "entry_inptu"}},
            r"unknown probe 'entry_inptu' \(did you mean 'entry_input'\?\)",
        ),
        ({"policy": {"kind": "nonuniform", "power": 1.0}}, r"policy\.power: Input should be greater than 1"),
        ({"polcy": {"kind": "uniform"}}, r"polcy: unknown key; did you mean 'policy'\?"),
        ({"num_steps": 0}, r"num_steps: Input should be greater than or equal to 1"),
        ({"policy": 3}, r"policy: a policy must be a mapping with a 'kind' key, got int"),
        (
            {"region_policies": {"a": {"kind": "uniform", "interval": -2}}},
            r"region_policies\.a\.interval: Input should be",
        ),
        ({"declare": [{"name": "x"}]}, r"declare\.0\.entry: Field required"),
        (
            {"declare": [{"name": "x", "entry": "a", "mode": "both"}]},
            r"declare\.0\.mode: Input should be 'output' or 'residual'",
        ),
    ],
)
def test_bad_configs_name_the_path_and_the_choices(data, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(data)


def test_config_error_is_a_value_error_and_lists_every_problem():
    with pytest.raises(ValueError) as error:
        load_config({"policy": {"kind": "uniform", "interval": 0, "warmup_steps": -1}, "num_steps": 0})
    message = str(error.value)
    assert "policy.interval" in message and "policy.warmup_steps" in message and "num_steps" in message


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("missing.yaml", None, "does not exist"),
        ("config.ini", "x=1", "unknown suffix '.ini'; use .yaml, .yml, .toml or .json"),
        ("bad.yaml", "policy: [unclosed", "is not valid YAML"),
        ("bad.toml", "policy = ", "is not valid TOML"),
        ("list.yaml", "- a\n- b\n", "must hold a mapping at the top, got list"),
    ],
)
def test_bad_files(tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_unreadable_source_type():
    with pytest.raises(ConfigError, match="cannot read a cachekit config from int"):
        load_config(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config,error,expected",
    [
        (
            {"regions": ["midle"], **MIDDLE},
            RegionNotFoundError,
            r"region 'midle' is not a region of TinyTransformer \(did you mean 'middle'\?\); available: .*'middle'",
        ),
        ({"regions": ["x"]}, RegionNotFoundError, "region 'x' is not a region of TinyTransformer; available: "),
        (
            {"declare": [{"name": "m", "entry": "blocks.9"}]},
            RegionNotFoundError,
            r"module path 'blocks.9' names nothing in TinyTransformer \(did you mean 'blocks.5'\?\); "
            r"'blocks' has: 'blocks.0', 'blocks.1',",
        ),
        (
            {"declare": [{"name": "m", "entry": "blocks.1", "exit": "out"}]},
            RegionNotFoundError,
            "must be children of the same module",
        ),
        (
            {"declare": [{"name": "m", "entry": "blocks.3", "exit": "blocks.1"}]},
            RegionNotFoundError,
            "comes before entry",
        ),
        (
            {"declare": [{"name": "a", "entry": "blocks.1", "exit": "blocks.3"}, {"name": "b", "entry": "blocks.3"}]},
            ConfigError,
            "regions 'a' and 'b' overlap: 'blocks.3' is 'blocks.3'",
        ),
        (
            {
                "declare": [
                    {"name": "a", "entry": "blocks.1", "exit": "blocks.3"},
                    {"name": "b", "entry": "blocks.2.mlp"},
                ]
            },
            ConfigError,
            "regions 'a' and 'b' overlap: 'blocks.2.mlp' is inside 'blocks.2'",
        ),
        (
            {**MIDDLE, "region_policies": {"other": "uniform"}},
            ConfigError,
            "region_policies names 'other', not a selected region; selected: 'middle'",
        ),
        ({**MIDDLE, "denoiser_policies": {"unet": "uniform"}}, ConfigError, "its denoisers: 'model'"),
        ({**MIDDLE, "denoisers": ["unet"]}, LookupError, "denoiser 'unet' is not in TinyTransformer"),
        (
            {**MIDDLE, "policy": {"kind": "similarity", "probe": "entry_residual"}},
            ConfigError,
            "needs region 'middle' to name a probe_base",
        ),
    ],
)
def test_enable_rejects_bad_regions_with_choices_and_installs_nothing(config, error, expected):
    model = tiny_transformer()
    with pytest.raises(error, match=expected):
        cachekit.enable(model, config)
    assert not any("forward" in vars(module) for module in model.modules())


def test_model_no_plugin_maps_needs_declared_regions():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
    with pytest.raises(RegionNotFoundError, match="no plugin maps regions onto Sequential; declare them"):
        cachekit.enable(model)
    with cachekit.cached(model, {"declare": [{"name": "all", "entry": "0", "exit": "2"}]}) as handle:
        assert handle.regions["all"].modules == ("0", "1", "2")


def test_overrides_replace_config_keys():
    model = tiny_transformer()
    with cachekit.cached(model, MIDDLE, policy={"kind": "uniform", "interval": 7}) as handle:
        assert handle.runtimes[0].runners[0].policy == UniformPolicy(interval=7)


def test_schema_lists_every_policy_kind():
    schema = json.dumps(config_schema())
    for kind in ("uniform", "nonuniform", "similarity"):
        assert f'"const": "{kind}"' in schema or f'"{kind}"' in schema
    assert "DeclaredRegion" in schema and "region_policies" in schema


def test_a_misspelt_policy_kind_is_not_taken_for_a_missing_file():
    with pytest.raises(ConfigError) as error:
        cachekit.enable(tiny_transformer(), "similarty")
    message = str(error.value)
    assert message.startswith("unknown policy kind 'similarty' (did you mean 'similarity'?); known kinds: ")
    assert "does not exist" not in message and ".yaml, .yml, .toml, .json" in message
    for path in ("similarty.yaml", "configs/similarty"):  # a config suffix or a folder: a file was meant
        with pytest.raises(ConfigError, match=f"config file '{path}' does not exist"):
            load_config(path)


def test_a_file_named_like_a_policy_kind_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("policy: uniform\n")
    with pytest.raises(ConfigError, match="config file 'mine': unknown suffix ''"):
        load_config("mine")


def test_a_region_given_by_module_paths_inside_regions_points_to_declare():
    with pytest.raises(ConfigError) as error:
        load_config({"regions": [{"name": "m", "entry": "blocks.1"}]})
    message = str(error.value)
    assert "regions: regions lists names only; a region given by module paths goes under 'declare'" in message
    assert "declare: [{name: m, entry: blocks.1}] and regions: [m]" in message and "valid string" not in message
