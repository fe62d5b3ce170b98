"""The experiment runner on tiny models: rows, files, fidelity, FLOP shares, reruns and the CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from cachekit_diffusers.calling import DiffusersCaller
from cachekit_diffusers.loading import load_pretrained
from cachekit_digits.loading import BUILDERS

import cachekit.experiments as experiments
from cachekit import ConfigError, Denoiser, RegionNotFoundError, hookimpl
from cachekit.cli import main
from cachekit.experiments import BASELINE, NOISE_FLOOR, ExperimentError, ExperimentRunner, ModelSpec, run_experiment
from cachekit.experiments.hooks import experiment_plugins, load_model
from cachekit.experiments.plots import pareto_front
from cachekit.flops import region_flop_shares
from cachekit.plugin_manager import register_plugin, unregister_plugin
from tests.models import tiny_transformer
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

TINY_UNET = {"model": {"builder": "tiny-unet"}, "sampling": {"steps": 6, "num_samples": 4, "batch_size": 2}}


def tiny_unet(*policies: dict, **sampling: object) -> dict:
    return {**TINY_UNET, "sampling": {**TINY_UNET["sampling"], **sampling}, "policies": list(policies)}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One run shared by several tests: always-refresh, interval 2 at branch 0, and the noise floor."""
    out = tmp_path_factory.mktemp("sweep")
    config = tiny_unet({"interval": 1, "branch": 0}, {"interval": 2, "branch": 0}, noise_floor=True)
    return run_experiment(config, out, progress=False)


def test_rows_come_baseline_first_with_every_measure(sweep):
    names = [row["setting"] for row in sweep.rows]
    assert names == [BASELINE, "uniform interval=1 @branch0", "uniform interval=2 @branch0", NOISE_FLOOR]
    baseline = sweep.rows[0]
    assert baseline["speedup"] == 1.0 and baseline["flops_share"] == 1.0
    assert baseline["refreshes"] == baseline["calls"] == 6.0
    assert baseline["psnr"] is None and baseline["fd"] > 0
    assert all(row["samples"] == 4 and row["loop_seconds"] > 0 for row in sweep.rows)


def test_always_refreshing_matches_the_baseline_exactly(sweep):
    row = sweep.rows[1]
    assert row["relative_l1"] == 0.0
    assert row["psnr"] is None  # identical samples: infinite PSNR is left empty
    assert row["ssim"] == pytest.approx(1.0)
    assert row["flops_share"] == pytest.approx(1.0)
    assert row["fd"] == pytest.approx(sweep.rows[0]["fd"])


def test_interval_two_refreshes_half_the_steps_and_skips_the_branch_flops(sweep):
    row = sweep.rows[2]
    assert row["refreshes"] == 3.0 and row["calls"] == 6.0
    pipe = load_model(ExperimentRunner(tiny_unet({"interval": 2})).config.model)
    unet = pipe.unet
    region = next(r for r in experiment_plugins().hook.cachekit_regions(model=unet) if r.name == "branch0")
    inputs = ((torch.randn(2, 1, 16, 16), torch.tensor(500)), {})
    share = region_flop_shares(unet, [region], *inputs)["branch0"]
    assert 0.3 < share < 1
    assert row["flops_share"] == pytest.approx(1 - share / 2, abs=1e-6)
    assert 0 < row["relative_l1"] < 1 and 5 < row["psnr"] < 60 and row["ssim"] < 1


def test_the_noise_floor_uses_other_seeds_and_has_no_fidelity(sweep):
    row = sweep.rows[3]
    assert row["psnr"] is row["ssim"] is row["relative_l1"] is None
    assert row["fd"] != sweep.rows[0]["fd"]


def test_files_are_written(sweep):
    out = sweep.output_dir
    saved = json.loads((out / "results.json").read_text())
    assert [row["setting"] for row in saved["rows"]] == [row["setting"] for row in sweep.rows]
    assert saved["fidelity_metric"] == sweep.fidelity_metric == "fd"
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:9] == [
        "setting",
        "policy",
        "regions",
        "samples",
        "loop_seconds",
        "speedup",
        "refreshes",
        "calls",
        "flops_share",
    ]
    assert header[9:13] == ["baseline_seconds", "speedup_min", "speedup_max", "noisy"]
    assert header[13] == "forecast"
    for name in ("none", "uniform_interval=2_branch0", "none_seeds_B"):
        assert (out / "grids" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert "pareto.png" in sweep.where()


def test_a_rerun_skips_what_is_done_and_runs_only_new_settings(tmp_path, monkeypatch):
    first = run_experiment(tiny_unet({"interval": 2, "branch": 0}), tmp_path, progress=False)
    second = run_experiment(
        tiny_unet({"interval": 2, "branch": 0}, {"interval": 3, "branch": 0}), tmp_path, progress=False
    )
    assert second.rows[:2] == first.rows
    assert second.rows[2]["setting"] == "uniform interval=3 @branch0" and second.rows[2]["refreshes"] == 2.0

    def no_model(self):
        raise AssertionError("nothing to run, yet the model was loaded")

    monkeypatch.setattr(ExperimentRunner, "_load_pipeline", no_model)
    assert run_experiment(tiny_unet({"interval": 3, "branch": 0}), tmp_path, progress=False).rows == [
        second.rows[0],
        second.rows[2],
    ]
    with pytest.raises(AssertionError, match="model was loaded"):
        run_experiment(tiny_unet({"interval": 3, "branch": 0}), tmp_path, fresh=True, progress=False)
    with pytest.raises(AssertionError, match="model was loaded"):  # other sampling: nothing reusable
        run_experiment(tiny_unet({"interval": 3, "branch": 0}, steps=5), tmp_path, progress=False)


def test_class_labels_reach_the_pipeline_and_give_class_accuracy(tmp_path):
    config = {
        "model": {"builder": "tiny-dit"},
        "sampling": {
            "steps": 4,
            "num_samples": 4,
            "batch_size": 4,
            "class_labels": [3, 7],
            "call": {"guidance_scale": 2},
        },
        "policies": [{"interval": 2, "regions": "blocks[1:2]"}],
    }
    results = run_experiment(config, tmp_path, progress=False)
    assert all(0 <= row["class_accuracy"] <= 1 for row in results.rows)
    assert results.rows[1]["refreshes"] == 2.0 and results.rows[1]["flops_share"] < 1


class ToyPipeline:
    """A pipeline without diffusers: Euler-like updates of a tiny transformer, no scheduler."""

    def __init__(self):
        self.model = tiny_transformer(depth=6)

    @torch.no_grad()
    def __call__(self, batch_size, num_inference_steps, generator, output_type):
        x = torch.stack([torch.randn(8, 4, generator=g) for g in generator])
        for step in range(num_inference_steps):
            x = x - 0.1 * self.model(x, 1000.0 * (1 - step / num_inference_steps))
        return SimpleNamespace(images=x)


class ToyPlugin:
    @hookimpl
    def cachekit_load_experiment_model(self, spec):
        return ToyPipeline() if spec.source == "toy" else None

    @hookimpl
    def cachekit_find_denoisers(self, pipeline):
        return [Denoiser("model", pipeline.model)] if isinstance(pipeline, ToyPipeline) else None


@pytest.fixture
def toy_plugin():
    name = register_plugin(ToyPlugin(), name="toy")
    try:
        yield
    finally:
        unregister_plugin(name)


def test_any_plugin_pipeline_runs_with_declared_regions(tmp_path, toy_plugin):
    declare = [{"name": "middle", "entry": "blocks.1", "exit": "blocks.4"}]
    config = {
        "model": {"source": "toy"},
        "sampling": {"steps": 8, "num_samples": 3, "batch_size": 3},
        "policies": [{"grid": {"interval": [1, 4]}, "cache": {"declare": declare}}],
    }
    results = run_experiment(config, tmp_path, progress=False)
    always, every4 = results.rows[1:]
    assert always["relative_l1"] == 0.0 and always["flops_share"] == pytest.approx(1.0)
    assert every4["refreshes"] == 2.0 and 0.3 < every4["flops_share"] < 1 and every4["relative_l1"] > 0
    assert every4["ssim"] is None  # not images: no SSIM, no grids
    assert results.fidelity_metric == "psnr" and not (tmp_path / "grids").exists()


def test_missing_models_and_bad_names_are_clear_errors(tmp_path):
    with pytest.raises(ExperimentError, match=r"cannot load '/no/such/folder'.*not a shipped model: 'digits-dit'"):
        run_experiment({**tiny_unet({"interval": 2}), "model": {"source": "/no/such/folder"}}, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"unknown model builder 'tiny-unte' \(did you mean 'tiny-unet'\?\)"):
        run_experiment({**tiny_unet({"interval": 2}), "model": {"builder": "tiny-unte"}}, tmp_path, progress=False)
    with pytest.raises(RegionNotFoundError, match="region 'branch9' is not a region of UNet2DModel"):
        run_experiment(tiny_unet({"interval": 2, "branch": 9}), tmp_path, progress=False)


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        ({"interval": 2, "branch": 9}, RegionNotFoundError, r"region 'branch9' is not a region of UNet2DModel"),
        (
            {"interval": 2, "branch": 0, "cache": {"region_policies": {"branch1": "uniform"}}},
            ConfigError,
            r"region_policies names 'branch1', not a selected region",
        ),
        (
            {"interval": 2, "branch": 0, "cache": {"denoiser_policies": {"transformer": "uniform"}}},
            ConfigError,
            r"denoiser_policies names 'transformer'",
        ),
        ({"interval": 2, "cache": {"denoisers": ["transformer"]}}, LookupError, r"denoiser 'transformer' is not in"),
    ],
    ids=["region", "region policy", "denoiser policy", "denoiser"],
)
def test_names_the_model_lacks_fail_before_anything_samples(tmp_path, monkeypatch, entry, error, message):
    calls = []
    monkeypatch.setattr(DiffusersCaller, "__call__", lambda self, pipeline, request: calls.append(request))
    config = tiny_unet({"interval": 3, "branch": 0}, entry)  # the bad setting comes second
    with pytest.raises(error, match=r"setting '.*': " + message):
        run_experiment(config, tmp_path, progress=False)
    assert calls == [] and not (tmp_path / "results.json").exists()


def test_the_plot_metric_must_be_one_that_was_measured(tmp_path):
    config = {**tiny_unet({"interval": 2, "branch": 0}, num_samples=2), "plot": {"fidelity": "lpips"}}
    with pytest.raises(ConfigError, match="plot.fidelity 'lpips' is not a measured metric; measured: 'fd', 'psnr'"):
        run_experiment(config, tmp_path, progress=False)


def test_pareto_front_keeps_the_undominated_points_by_speed():
    points = [(1.0, 10.0), (1.5, 9.0), (1.4, 8.0), (2.0, 9.5), (3.0, 5.0)]
    assert pareto_front(points, higher_is_better=True) == [0, 3, 4]
    assert pareto_front(points, higher_is_better=False) == [4]


def test_cachekit_run_prints_the_table_and_where_the_files_are(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "model: {builder: tiny-unet}\nsampling: {steps: 4, num_samples: 2, batch_size: 2}\n"
        "policies: [{interval: 2, branch: 0}]\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == [
        "setting",
        "speedup",
        "refreshes",
        "FLOPs",
        "psnr",
        "ssim",
        "relative_l1",
        "fd",
    ]
    assert "uniform interval=2 @branch0" in printed and str(tmp_path / "out" / "pareto.png") in printed
    path.write_text("model: {builder: tiny-unet}\npolicies: [{intervall: 2}]\n")
    assert main(["run", str(path), "--quiet"]) == 2
    assert "did you mean 'interval'" in capsys.readouterr().err


def test_cachekit_demo_runs_the_default_experiment_on_the_shipped_unet(tmp_path, capsys, monkeypatch):
    assert experiments.DEMO_EXPERIMENT["model"] == {"source": "digits-unet"}
    demo = ExperimentRunner(experiments.DEMO_EXPERIMENT).config
    assert demo.sampling.steps == 50 and [s.cache.regions for s in demo.settings] == [("branch0",)] * 4
    small = {**experiments.DEMO_EXPERIMENT, "sampling": {"steps": 4, "num_samples": 4, "batch_size": 4}}
    monkeypatch.setattr(experiments, "DEMO_EXPERIMENT", small)  # the same experiment, fewer samples and steps
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for name in ["none", *(setting.name for setting in demo.settings)]:
        assert f"\n{name} " in printed
    assert f"sample grids: {tmp_path / 'grids'}" in printed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["model"]["source"] == "digits-unet" and saved["fidelity_metric"] == "fd"


def test_a_local_folder_loads_through_from_pretrained_with_the_scheduler_asked_for(tmp_path):
    folder = tmp_path / "my-model"
    BUILDERS["tiny-unet"]().save_pretrained(folder)
    spec = {"source": str(folder), "pipeline": "DDIMPipeline", "scheduler": "DDPMScheduler"}
    pipe = load_pretrained(ModelSpec(**spec, scheduler_options={"timestep_spacing": "trailing"}))
    assert type(pipe).__name__ == "DDIMPipeline" and type(pipe.scheduler).__name__ == "DDPMScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"

    config = {**tiny_unet({"interval": 2, "branch": 0}, num_samples=2), "model": {"source": str(folder)}}
    results = run_experiment(config, tmp_path / "out", progress=False)
    assert [row["setting"] for row in results.rows] == [BASELINE, "uniform interval=2 @branch0"]
    assert "fd" not in results.rows[0]  # a user's folder is not scored as digits
    message = r"'DDIMSchedular' is not a diffusers Scheduler class \(did you mean 'DDIMScheduler'\?\)"
    with pytest.raises(ConfigError, match=message):
        load_pretrained(ModelSpec(source=str(folder), scheduler="DDIMSchedular"))


def test_the_plot_gives_forecasting_settings_their_own_legend_entry_and_says_when_noise_is_unknown(
    tmp_path, monkeypatch
):
    from cachekit.experiments import plots

    def row(name, forecast, speedup, fd):
        policy = json.dumps({"kind": "uniform", "interval": 3})
        return {"setting": name, "policy": policy, "forecast": forecast, "speedup": speedup, "fd": fd}

    rows = [row("a", "none", 2.0, 50.0), row("b", "linear", 2.0, 40.0), row("c", "none", 3.0, 70.0)]
    assert [plots.legend_group(r) for r in rows] == ["uniform", "uniform, forecast linear", "uniform"]
    drawn = {}
    real = plots.pyplot

    def keep(*args, **kwargs):
        plt = real()
        original = plt.subplots

        def subplots(*a, **k):
            figure, axes = original(*a, **k)
            drawn["axes"] = axes
            return figure, axes

        monkeypatch.setattr(plt, "subplots", subplots)
        return plt

    monkeypatch.setattr(plots, "pyplot", keep)
    plots.save_pareto(rows, "fd", False, tmp_path / "p.png")
    labels = [text.get_text() for text in drawn["axes"].get_legend().get_texts()]
    assert "uniform, forecast linear" in labels and "uniform" in labels
    assert "no noise band" in drawn["axes"].get_title()
    offsets = [annotation.xyann for annotation in drawn["axes"].texts]
    assert len(set(offsets)) == len(offsets)  # neighbouring labels never sit at the same offset
