"""The shipped digits models: files, loading through diffusers, classifier, FD, and sample quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cachekit_digits.data import load_digits
from cachekit_digits.loading import load_pipeline
from cachekit_digits.models import WEIGHTS_DIR
from cachekit_digits.quality import DigitsScorer, frechet_distance, shipped_classifier

import cachekit
from cachekit.experiments import ModelSpec, load_experiment
from cachekit.experiments.metrics import psnr
from cachekit.plugin_manager import load_plugins
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

SAMPLES = 64
STEPS = 50


def sample(pipe, count: int = SAMPLES, steps: int = STEPS, **call) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(seed) for seed in range(count)]
    return pipe(num_inference_steps=steps, generator=generators, output_type="pt", **call).images


@pytest.fixture(scope="module")
def unet_pipe():
    pipe = load_pipeline(ModelSpec(source="digits-unet"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def dit_pipe():
    pipe = load_pipeline(ModelSpec(source="digits-dit"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_weights_ship_as_a_few_megabytes_of_safetensors():
    files = [path for path in WEIGHTS_DIR.rglob("*") if path.is_file()]
    names = {str(path.relative_to(WEIGHTS_DIR)) for path in files}
    assert {
        "unet/model_index.json",
        "unet/unet/diffusion_pytorch_model.safetensors",
        "dit/model_index.json",
        "dit/transformer/diffusion_pytorch_model.safetensors",
        "classifier/model.safetensors",
    } <= names
    assert not any(path.suffix in (".bin", ".pt", ".ckpt") for path in files)
    assert sum(path.stat().st_size for path in files) < 8_000_000


def test_models_load_with_diffusers_from_pretrained_from_the_package_folder(unet_pipe, dit_pipe):
    assert type(unet_pipe).__name__ == "DDIMPipeline" and type(dit_pipe).__name__ == "DigitsDiTPipeline"
    assert unet_pipe.unet.config._name_or_path == str(WEIGHTS_DIR / "unet" / "unet")
    assert dit_pipe.transformer.config._name_or_path == str(WEIGHTS_DIR / "dit" / "transformer")
    assert unet_pipe.unet.dtype == dit_pipe.transformer.dtype == torch.float32
    index = json.loads((WEIGHTS_DIR / "unet" / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"]


def test_the_unet_has_three_levels_with_attention_at_the_lowest(unet_pipe):
    config = unet_pipe.unet.config
    assert len(config.block_out_channels) == 3
    assert list(config.down_block_types) == ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
    regions = load_plugins().hook.cachekit_regions(model=unet_pipe.unet)
    assert [region.name for region in regions][:1] == ["branch0"]


def test_the_dit_is_class_conditional_and_mapped_by_the_dit_plugin(dit_pipe):
    config = dit_pipe.transformer.config
    assert config.num_embeds_ada_norm == 11 and config.norm_type == "ada_norm_zero"
    regions = load_plugins().hook.cachekit_regions(model=dit_pipe.transformer)
    assert regions[0].name == "blocks[1:6]"
    with pytest.raises(ValueError, match="class_labels must be a non-empty list of digits 0-9"):
        dit_pipe(class_labels=[3, 10])


def test_the_classifier_reaches_97_percent_on_held_out_digits():
    images, labels = load_digits("test")
    with torch.no_grad():
        accuracy = (shipped_classifier()(images).argmax(1) == labels).float().mean().item()
    assert len(labels) == 359
    assert accuracy >= 0.97


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    std_a, std_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    fit_a = (mean_a.double(), torch.diag(std_a**2).double())
    fit_b = (mean_b.double(), torch.diag(std_b**2).double())
    expected = (mean_a - mean_b).pow(2).sum() + (std_a - std_b).pow(2).sum()
    assert frechet_distance(fit_a, fit_b) == pytest.approx(float(expected))
    assert frechet_distance(fit_a, fit_a) == pytest.approx(0.0, abs=1e-9)


def test_fd_separates_real_digits_from_noise_and_accuracy_uses_the_labels():
    scorer = DigitsScorer()
    images, labels = load_digits("test")
    real = (images[:SAMPLES] + 1) / 2
    noise = torch.rand(SAMPLES, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    real_scores = scorer(real, labels[:SAMPLES])
    assert real_scores["class_accuracy"] >= 0.95
    assert scorer(real, (labels[:SAMPLES] + 1) % 10)["class_accuracy"] <= 0.05
    assert scorer(noise, None)["fd"] > 10 * real_scores["fd"]
    assert "class_accuracy" not in scorer(noise, None)
    with pytest.raises(ValueError, match=r"digits scorer needs images \(N, 1, 16, 16\)"):
        scorer(torch.rand(2, 3, 16, 16), None)


def reference_fd() -> float:
    """FD of 64 real held-out digits: what a perfect model scores at this sample count."""
    images, _ = load_digits("test")
    return DigitsScorer()((images[:SAMPLES] + 1) / 2, None)["fd"]


@pytest.mark.slow
def test_unet_samples_are_recognisable_digits_and_near_free_at_interval_2(unet_pipe):
    scorer = DigitsScorer()
    uncached = sample(unet_pipe, batch_size=SAMPLES)
    with torch.no_grad():
        confidence = shipped_classifier()(uncached * 2 - 1).softmax(1).amax(1).mean().item()
    assert confidence > 0.9
    fd = scorer(uncached, None)["fd"]
    assert fd < 3 * reference_fd()
    with cachekit.cached(unet_pipe, {"policy": {"kind": "uniform", "interval": 2}, "regions": ["branch0"]}) as handle:
        cached = sample(unet_pipe, batch_size=SAMPLES)
    assert handle.stats.refresh_steps("branch0") == list(range(0, STEPS, 2))
    assert scorer(cached, None)["fd"] < 1.25 * fd


@pytest.mark.slow
def test_dit_samples_show_the_requested_digit(dit_pipe):
    labels = [i % 10 for i in range(40)]  # DDIM 25 steps, guidance 1.5: keeps the test short
    images = sample(dit_pipe, count=40, steps=25, class_labels=labels, guidance_scale=1.5)
    scores = DigitsScorer()(images, torch.tensor(labels))
    assert scores["class_accuracy"] >= 0.9
    assert scores["fd"] < 3 * reference_fd()


@pytest.mark.parametrize("example", ["digits_unet_sweep", "digits_dit_sweep"])
def test_the_digits_example_configs_name_regions_the_models_have(example, unet_pipe, dit_pipe):
    config = load_experiment(Path(__file__).parents[1] / "examples" / f"{example}.yaml")
    pipe = {"digits-unet": unet_pipe, "digits-dit": dit_pipe}[config.model.source]
    for setting in config.settings:
        cachekit.enable(pipe, setting.cache).disable()


@pytest.mark.slow
def test_linear_forecast_keeps_five_refreshes_of_the_unet_closer_to_uncached(unet_pipe):
    """The budget of interval 10 on branch 0: forecasting reuse steps beats serving them stored."""
    count = 32
    uncached = sample(unet_pipe, count=count, batch_size=count)
    schedule = {"policy": {"kind": "nonuniform", "interval": 10, "center": 10, "power": 3.0}, "regions": ["branch0"]}
    fidelity = {}
    for forecast in ("none", "linear"):
        with cachekit.cached(unet_pipe, {**schedule, "forecast": forecast}) as handle:
            cached = sample(unet_pipe, count=count, batch_size=count)
        assert handle.stats.refresh_steps("branch0") == [0, 4, 10, 21, 34]
        fidelity[forecast] = sum(psnr(a, b, data_range=1.0) for a, b in zip(cached, uncached, strict=True)) / count
    assert fidelity["linear"] > fidelity["none"] + 2.0  # the docs figures: 31.8 dB forecast, 1024 samples
