"""The experiments layer's plugin side: entry keys, callers and named models from plugins, the
runner on the handle's public API only, and the layer kept apart from the core."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from cachekit_diffusers.calling import DiffusersCaller

import cachekit
import cachekit.experiments.runner as runner_module
from cachekit import ConfigError, ExperimentError, ModelSpec, hookimpl
from cachekit.experiments import EntryKey, SampleRequest, load_experiment, run_experiment
from cachekit.experiments.hooks import experiment_plugins, named_models
from cachekit.plugin_manager import register_plugin, unregister_plugin
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

EXPERT = EntryKey(
    type=Literal["high", "low"],
    to_config=lambda expert: {"denoisers": [{"high": "transformer", "low": "transformer_2"}[expert]]},
)


class ExpertPlugin:
    """A third-party plugin with an entry key that selects a denoiser, not regions."""

    @hookimpl
    def cachekit_experiment_entry_keys(self) -> dict[str, EntryKey]:
        return {"expert": EXPERT}


@pytest.fixture
def expert_plugin() -> Iterator[None]:
    name = register_plugin(ExpertPlugin(), name="expert-key")
    try:
        yield
    finally:
        unregister_plugin(name)


def experiment(*policies: dict[str, Any]) -> cachekit.experiments.ExperimentConfig:
    return load_experiment({"model": {"source": "digits-unet"}, "policies": list(policies)})


def test_a_plugin_key_sets_cache_keys_and_names_the_setting(expert_plugin: None) -> None:
    config = experiment({"interval": 2, "grid": {"expert": ["high", "low"]}, "branch": 0})
    assert [s.name for s in config.settings] == [
        "uniform interval=2 expert=high @branch0",
        "uniform interval=2 expert=low @branch0",
    ]
    assert [s.cache.denoisers for s in config.settings] == [("transformer",), ("transformer_2",)]
    assert {s.cache.regions for s in config.settings} == {("branch0",)}


def test_plugin_keys_are_validated_and_listed_in_errors(expert_plugin: None) -> None:
    with pytest.raises(ConfigError, match=r"policies\.0\.expert: Input should be 'high' or 'low' \(got 'mid'\)"):
        experiment({"expert": "mid"})
    with pytest.raises(ConfigError) as error:
        experiment({"expret": "high"})
    assert "(did you mean 'expert'?)" in str(error.value)
    assert "keys allowed here: 'branch', 'cache', 'expert', 'forecast', 'grid'" in str(error.value)
    with pytest.raises(ConfigError, match="'denoisers' set both by an entry key and in 'cache'"):
        experiment({"expert": "high", "cache": {"denoisers": ["transformer"]}})


def test_without_the_plugin_its_key_is_unknown() -> None:
    with pytest.raises(ConfigError, match="key 'expert' is not a field of policy kind 'uniform'"):
        experiment({"expert": "high"})


class Clashing:
    def __init__(self, key: str):
        self.key = key

    @hookimpl
    def cachekit_experiment_entry_keys(self) -> dict[str, EntryKey]:
        return {self.key: EXPERT}


@pytest.mark.parametrize(
    ("key", "message"),
    [("expert", "entry keys 'expert' are added by two plugins"), ("regions", "keys 'regions', which are built in")],
)
def test_a_key_two_plugins_add_or_a_built_in_key_is_an_error(expert_plugin: None, key: str, message: str) -> None:
    name = register_plugin(Clashing(key), name="clashing-key")
    try:
        with pytest.raises(ExperimentError, match=message):
            experiment({"interval": 2})
    finally:
        unregister_plugin(name)


def test_experiment_specs_join_the_manager_once_and_first_party_precedence_is_explicit() -> None:
    pm = experiment_plugins()
    assert experiment_plugins() is pm and pm.hook.cachekit_experiment_caller.has_spec()
    loaders = {impl.plugin_name: impl for impl in pm.hook.cachekit_load_experiment_model.get_hookimpls()}
    assert all(loaders[name].trylast for name in ("cachekit_digits", "cachekit_diffusers"))
    # the catch-all from_pretrained leaves the names another plugin ships to it, whatever the order
    assert loaders["cachekit_diffusers"].function(spec=ModelSpec(source="digits-unet")) is None
    names = {spec.label for spec in named_models()}
    assert {"digits-unet", "digits-dit", "builder:tiny-unet", "builder:tiny-dit"} <= names


def test_a_source_nobody_can_load_gets_a_did_you_mean_of_the_shipped_names(tmp_path: Path) -> None:
    message = r"cannot load './digits-umet' \(did you mean 'digits-unet'\?\) \(not a shipped model: 'digits-dit'"
    with pytest.raises(ExperimentError, match=message):
        run_experiment({"model": {"source": "./digits-umet"}, "policies": [{}]}, tmp_path, progress=False)


def test_the_diffusers_caller_passes_prompts_labels_or_a_batch_size() -> None:
    caller = DiffusersCaller()
    base = {"steps": 4, "seeds": [1, 2], "options": {"guidance_scale": 3.0}}
    prompted = caller.arguments(SampleRequest(**base, prompts=["a", "b"]))
    assert prompted["prompt"] == ["a", "b"] and prompted["guidance_scale"] == 3.0 and "batch_size" not in prompted
    assert caller.arguments(SampleRequest(**base, class_labels=[3, 4]))["class_labels"] == [3, 4]
    plain = caller.arguments(SampleRequest(**base))
    assert plain["batch_size"] == 2 and plain["num_inference_steps"] == 4 and plain["output_type"] == "pt"
    assert [g.initial_seed() for g in plain["generator"]] == [1, 2]
    assert set(plain) - {"guidance_scale"} <= caller.reserved


class PublicOnly:
    """A handle that shows the runner only the public API; any other attribute does not exist."""

    def __init__(self, handle: cachekit.CacheHandle):
        self._handle = handle

    @property
    def views(self) -> dict[str, cachekit.RegionView]:
        return self._handle.views

    @property
    def stats(self) -> Any:
        return self._handle.stats

    def disable(self) -> None:
        self._handle.disable()


def test_the_runner_reads_a_cached_run_through_the_public_handle_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runner_module, "enable", lambda pipeline, config: PublicOnly(cachekit.enable(pipeline, config)))
    config = {
        "model": {"builder": "tiny-unet"},
        "sampling": {"steps": 4, "num_samples": 2, "batch_size": 2},
        "policies": [{"interval": 2, "branch": 0}],
    }
    row = run_experiment(config, tmp_path, progress=False).rows[1]
    assert row["regions"] == "branch0" and row["refreshes"] == 2.0 and row["calls"] == 4.0
    assert 0 < row["flops_share"] < 1


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_the_core_never_imports_the_experiments_layer() -> None:
    package = Path(cachekit.__file__).parent
    faces = {package / "__init__.py", package / "cli.py"}  # the public index, and `run`/`demo` (lazily)
    core = [path for path in package.rglob("*.py") if "experiments" not in path.parts and path not in faces]
    offenders = [path.name for path in core if any(name.startswith("cachekit.experiments") for name in _imports(path))]
    assert core and offenders == []
    cli = ast.parse((package / "cli.py").read_text(encoding="utf-8"))
    assert not any(isinstance(node, ast.ImportFrom) and "experiments" in (node.module or "") for node in cli.body)
