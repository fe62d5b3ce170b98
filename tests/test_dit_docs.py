"""The DiT page's examples run and print the hit maps the page shows."""

from __future__ import annotations

import runpy

import pytest
import torch

from tests import dit_models
from tests.docs_support import DOCS_SRC

EXAMPLES = DOCS_SRC / "models"


def test_flux_quickstart_prints_the_hit_map_on_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "dit_quickstart.py"
    generate = runpy.run_path(str(example))["generate"]
    pipe, call = dit_models.flux_pipeline()
    dit_models.smooth_time(pipe.transformer)
    latents = generate(pipe, **call, num_inference_steps=28)
    assert latents.shape == (1, 16, 8)
    assert capsys.readouterr().out == example.with_suffix(".txt").read_text(encoding="utf-8")


def test_timm_style_example_prints_the_hit_map_on_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "dit_timm.py"
    sample = runpy.run_path(str(example))["sample"]
    model = dit_models.timm_dit()
    generator = torch.Generator().manual_seed(0)
    x = sample(model, torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([1, 7]))
    assert x.shape == (2, 4, 8, 8)
    assert capsys.readouterr().out == example.with_suffix(".txt").read_text(encoding="utf-8")
