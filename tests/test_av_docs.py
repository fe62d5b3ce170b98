"""The audio and video pages' examples run on tiny pipelines and print the hit maps the pages show."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from typing import Any

import pytest

from tests import av_models, unet_models
from tests.docs_support import DOCS, DOCS_SRC
from tests.unet_models import one_thread  # noqa: F401  (autouse fixture)

STEPS = 12


def _wan22() -> tuple[Any, dict[str, Any]]:
    return av_models.wan_pipeline(two_experts=True)


def _text_to_video() -> tuple[Any, dict[str, Any]]:
    call = {**unet_models.prompt_embeds(8), "num_frames": 2, "height": 8, "width": 8, "output_type": "latent"}
    return unet_models.video_pipeline("TextToVideoSDPipeline"), call


EXAMPLES: dict[str, tuple[Callable[[], tuple[Any, dict[str, Any]]], str]] = {
    "video_wan22": (_wan22, "video.md"),
    "video_pyramid": (_text_to_video, "video.md"),
    "audio_stable_audio": (av_models.stable_audio_pipeline, "audio.md"),
}
"""Each example: the tiny pipeline it runs on here, and the page that includes it."""


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_prints_the_hit_map_on_its_page(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    build, page = EXAMPLES[name]
    pipe, call = build()
    pipe.set_progress_bar_config(disable=True)
    runpy.run_path(str(DOCS_SRC / "models" / f"{name}.py"))["generate"](pipe, **call, num_inference_steps=STEPS)
    assert capsys.readouterr().out == (DOCS_SRC / "models" / f"{name}.txt").read_text(encoding="utf-8")
    text = (DOCS / "models" / page).read_text(encoding="utf-8")
    assert f'--8<-- "models/{name}.py"' in text and f'--8<-- "models/{name}.txt"' in text
