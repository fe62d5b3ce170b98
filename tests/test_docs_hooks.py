"""The Plugin hooks page documents every hook, and its examples are a working plugin.

Adding a hook spec to ``cachekit.hookspecs`` or ``cachekit.experiments.hookspecs`` without a
section on docs/plugin-hooks.md and an example in docs_src/plugin_hooks.py fails here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest
import torch

import cachekit
from cachekit import ModelSpec, hookspecs
from cachekit.experiments import SampleRequest, load_experiment
from cachekit.experiments import hookspecs as experiment_hookspecs
from cachekit.experiments.hooks import load_model
from cachekit.plugin_manager import register_plugin, unregister_plugin
from tests.docs_support import DOCS, DOCS_SRC, load_module
from tests.models import TinyTransformer

PAGE = (DOCS / "plugin-hooks.md").read_text(encoding="utf-8")
SPEC_MODULES = {
    name: module.__name__
    for module in (hookspecs, experiment_hookspecs)
    for name, value in vars(module).items()
    if hasattr(value, "cachekit_spec")
}
SPECS = sorted(SPEC_MODULES)


examples = load_module(DOCS_SRC / "plugin_hooks.py", "cachekit_docs_plugin_hooks")


def _sections() -> dict[str, str]:
    parts = re.split(r"^## `(\w+)`\s*$", PAGE, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_specs_are_found() -> None:
    assert "cachekit_regions" in SPECS and "cachekit_find_denoisers" in SPECS
    assert SPEC_MODULES["cachekit_experiment_entry_keys"] == "cachekit.experiments.hookspecs"
    assert not set(vars(hookspecs)) & {"cachekit_load_experiment_model", "cachekit_sample_scorer"}  # not the core's


def test_every_hook_has_one_section_and_no_section_is_stale() -> None:
    sections = _sections()
    assert sorted(sections) == SPECS, f"undocumented: {set(SPECS) - set(sections)}; stale: {set(sections) - set(SPECS)}"


@pytest.mark.parametrize("name", SPECS)
def test_section_shows_the_spec_and_its_example(name: str) -> None:
    section = _sections()[name]
    assert f"::: {SPEC_MODULES[name]}.{name}" in section
    assert f'--8<-- "plugin_hooks.py:{name}"' in section


def test_example_plugin_implements_every_hook_with_valid_signatures() -> None:
    pm = pluggy.PluginManager("cachekit")
    pm.add_hookspecs(hookspecs)
    pm.add_hookspecs(experiment_hookspecs)
    pm.register(examples)  # pluggy rejects an implementation whose arguments the spec lacks
    implemented = sorted(caller.name for caller in pm.get_hookcallers(examples) or [])
    assert implemented == SPECS


@pytest.mark.parametrize(
    "hook, kwargs",
    [
        ("cachekit_find_denoisers", {"pipeline": object()}),
        ("cachekit_regions", {"model": torch.nn.Linear(2, 2)}),
        ("cachekit_extra_regions", {"model": torch.nn.Linear(2, 2)}),
        ("cachekit_region_named", {"model": torch.nn.Linear(2, 2), "name": "blocks[0:1]"}),
        ("cachekit_example_inputs", {"model": torch.nn.Linear(2, 2)}),
        ("cachekit_step_completed", {"scheduler": object()}),
    ],
)
def test_dispatch_examples_answer_none_for_what_is_not_theirs(hook: str, kwargs: dict[str, Any]) -> None:
    assert getattr(examples, hook)(**kwargs) is None


# --- the examples at work, through cachekit.enable -------------------------------------------


class MyTransformer(TinyTransformer):
    """Stands for mylib's transformer: the plugin knows it by this class name."""


class MyScheduler:
    """Two calls per step, the second on the same timestep (a predictor and a corrector)."""

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.linspace(999, 0, num_inference_steps).round()
        self.calls = 0

    def step(self, output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return sample - 0.05 * output


class MyPipeline:
    """Stands for mylib's pipeline: a transformer called twice per scheduler step."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.transformer = MyTransformer(depth=4).eval()
        self.scheduler = MyScheduler()

    @torch.no_grad()
    def __call__(self, num_inference_steps: int) -> torch.Tensor:
        self.scheduler.set_timesteps(num_inference_steps)
        sample = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
        for timestep in self.scheduler.timesteps:
            for _ in range(2):
                sample = self.scheduler.step(self.transformer(sample, timestep), timestep, sample)
        return sample


@pytest.fixture
def example_plugin(scoped_registries: None) -> Iterator[str]:
    """The example plugin registered for one test; the kinds and probes it adds are dropped after."""
    name = register_plugin(examples, name="docs-plugin-hooks-example")
    try:
        yield name
    finally:
        unregister_plugin(name)


def test_examples_drive_a_pipeline(example_plugin: str) -> None:
    pipe = MyPipeline()
    config = {"policy": {"kind": "fixed-steps", "steps": [0, 3]}, "regions": ["blocks[1:3]"]}
    with cachekit.enable(pipe, config) as handle:
        pipe(num_inference_steps=5)
    assert list(handle.regions) == ["blocks[1:3]"]
    assert handle.stats.refresh_steps("blocks[1:3]") == [0, 3]
    assert handle.stats.refreshes == 4 and handle.stats.reuses == 6  # two calls in each of 5 steps


def test_default_region_and_probe_example(example_plugin: str) -> None:
    pipe = MyPipeline()
    with cachekit.enable(pipe, {"policy": {"kind": "similarity", "probe": "token_mean", "threshold": 1e9}}) as handle:
        pipe(num_inference_steps=4)
    assert list(handle.regions) == ["middle"]
    assert handle.stats.refresh_steps("middle") == [0]


class MyAttention(torch.nn.Linear):
    """Stands for mylib's attention layer, inside a model another plugin maps."""


def test_extra_regions_example_adds_mylib_attention_to_any_model(example_plugin: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), MyAttention(2, 2), torch.nn.ReLU(), MyAttention(2, 2))
    with cachekit.enable(model, {"regions": ["my_attention"]}) as handle:
        assert handle.regions["my_attention"].modules == ("1", "3")


def test_region_named_example_rejects_a_range_past_the_end(example_plugin: str) -> None:
    with pytest.raises(cachekit.RegionNotFoundError, match="stop <= 4"):
        cachekit.enable(MyPipeline(), {"regions": ["blocks[2:9]"]})


def test_example_inputs_example_runs_the_model(example_plugin: str) -> None:
    model = MyPipeline().transformer
    args, kwargs = cachekit.plugin_manager.load_plugins().hook.cachekit_example_inputs(model=model)
    assert model(*args, **kwargs).shape == args[0].shape


def test_experiment_examples_answer_only_for_their_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    other = ModelSpec(builder="someone-else")
    assert examples.cachekit_load_experiment_model(spec=other) is None
    assert examples.cachekit_sample_scorer(spec=other) is None
    assert examples.cachekit_experiment_caller(spec=other) is None

    loaded = []

    def tiny(**options: Any) -> torch.nn.Module:
        loaded.append(options)
        return torch.nn.Linear(2, 2)

    monkeypatch.setitem(sys.modules, "mylib", SimpleNamespace(MyPipeline=SimpleNamespace(tiny=tiny)))
    ours = ModelSpec(builder="mylib-tiny", options={"depth": 2}, dtype="bfloat16")
    pipeline = examples.cachekit_load_experiment_model(spec=ours)
    assert loaded == [{"depth": 2}] and pipeline.weight.dtype == torch.bfloat16
    scorer = examples.cachekit_sample_scorer(spec=ours)
    assert set(scorer(torch.full((2, 3, 4, 4), 0.25), None)) == set(scorer.metrics) == {"brightness"}


def test_forecaster_example_serves_half_a_step_further(example_plugin: str) -> None:
    forecaster = examples.HalfStepForecast()
    first, second = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[2.0, 2.0], [5.0, 6.0]])
    forecaster.record(0, (first,))
    forecaster.record(2, (second,))
    torch.testing.assert_close(forecaster.serve(3)[0], second + 0.5 * (second - first))
    forecaster.record(4, (first * 10,), rows=torch.tensor([False, True]))  # only row 1 refreshed
    torch.testing.assert_close(forecaster.serve(5)[0][0], second[0] + 0.5 * (second[0] - first[0]))
    torch.testing.assert_close(forecaster.serve(5)[0][1], first[1] * 10 + 0.5 * (first[1] * 10 - second[1]))
    pipe = MyPipeline()
    config = {"policy": {"kind": "fixed-steps", "steps": [0, 1]}, "regions": ["blocks[1:3]"], "forecast": "half-step"}
    with cachekit.enable(pipe, config) as handle:
        pipe(num_inference_steps=4)
    assert handle.stats.refresh_steps("blocks[1:3]") == [0, 1] and handle.stats.reuses == 4
    assert handle.cache_bytes == 0  # freed when the scheduler finished the last step


def test_stateful_policy_example_counts_calls_per_context_and_starts_over(example_plugin: str) -> None:
    pipe = MyPipeline()  # two transformer calls per step (a predictor and a corrector)
    with cachekit.enable(pipe, {"policy": {"kind": "every-nth-call", "n": 3}, "regions": ["blocks[1:3]"]}) as handle:
        for _ in range(2):  # the state is made fresh at every generation
            pipe(num_inference_steps=3)
            assert handle.stats["blocks[1:3]"].hits[0] == {0: "R.", 1: ".R", 2: ".."}


def test_caller_example_asks_for_the_seeds_and_reserves_its_arguments(example_plugin: str) -> None:
    asked = []

    def generate(steps: int, seeds: list[int], **options: Any) -> torch.Tensor:
        asked.append((steps, seeds, options))
        return torch.zeros(len(seeds), 1, 4, 4)

    caller = examples.cachekit_experiment_caller(spec=ModelSpec(builder="mylib-tiny"))
    images = caller(SimpleNamespace(generate=generate), SampleRequest(steps=3, seeds=[7, 8], options={"eta": 0.5}))
    assert asked == [(3, [7, 8], {"eta": 0.5})] and images.shape == (2, 1, 4, 4) and float(images.mean()) == 0.5
    with pytest.raises(cachekit.ConfigError, match="sampling: 'call' may not set 'steps'"):
        load_experiment({"model": {"builder": "mylib-tiny"}, "sampling": {"call": {"steps": 2}}, "policies": [{}]})


def test_entry_keys_example_selects_block_ranges(example_plugin: str) -> None:
    config = {"model": {"builder": "mylib-tiny"}, "policies": [{"interval": 2, "blocks": [1, 3]}]}
    (setting,) = load_experiment(config).settings
    assert setting.cache.regions == ("blocks[1:3]",) and setting.name == "uniform interval=2 @blocks[1:3]"
    with pytest.raises(
        cachekit.ConfigError, match=r"policies\.0\.blocks\.1: Input should be greater than or equal to 0"
    ):
        load_experiment({**config, "policies": [{"grid": {"blocks": [[0, 2], [1, -1]]}}]})


def test_models_example_is_named_when_a_builder_is_misspelt(example_plugin: str) -> None:
    with pytest.raises(
        cachekit.ConfigError, match=r"unknown model builder 'mylib-tny' \(did you mean 'mylib-tiny'\?\)"
    ):
        load_model(ModelSpec(builder="mylib-tny"))
