"""The UNet page's example runs and prints the hit map the page shows."""

from __future__ import annotations

import runpy

import pytest

from tests.docs_support import DOCS_SRC
from tests.unet_models import one_thread, prompt_embeds, sd_pipeline  # noqa: F401  (autouse fixture)

EXAMPLE = DOCS_SRC / "models" / "unet_quickstart.py"


def test_quickstart_prints_the_hit_map_on_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    generate = runpy.run_path(str(EXAMPLE))["generate"]
    images = generate(sd_pipeline(), **prompt_embeds(8), num_inference_steps=50, output_type="np")
    assert images.shape == (1, 8, 8, 3)
    assert capsys.readouterr().out == EXAMPLE.with_suffix(".txt").read_text(encoding="utf-8")
