"""The example files the docs include (docs_src/) run, and print what the docs show.

Each example's printed output is kept next to it (``*.txt``) and included in the page, so
a change in behaviour fails here before the docs go stale.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import cachekit
from cachekit.config import load_config
from tests.docs_support import DOCS_SRC
from tests.unet_models import one_thread, tiny_sd_unet  # noqa: F401  (one_thread: autouse fixture)

MY_MODEL = DOCS_SRC / "my_model"


def run_example(path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an example script as ``python path`` would, and return what it printed."""
    monkeypatch.syspath_prepend(str(path.parent))
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize("name", ["declare", "read_stats"])
def test_my_model_examples_print_what_the_docs_show(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = run_example(MY_MODEL / f"{name}.py", capsys, monkeypatch)
    assert printed == (MY_MODEL / f"{name}.txt").read_text(encoding="utf-8")


def test_declared_region_skips_its_blocks_on_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML's region is blocks 2 to 6, and they run only at the 7 refresh steps of 20."""
    monkeypatch.syspath_prepend(str(MY_MODEL))
    from model import MyDiT, denoise  # type: ignore[import-not-found]

    config = load_config(MY_MODEL / "cache.yaml")
    assert [(spec.name, spec.entry, spec.exit, spec.mode) for spec in config.declare] == [
        ("middle", "blocks.2", "blocks.6", "residual")
    ]
    calls: list[nn.Module] = []
    original = nn.TransformerEncoderLayer.forward

    def counted(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.TransformerEncoderLayer, "forward", counted)
    torch.manual_seed(0)
    model = MyDiT().eval()
    with cachekit.cached(model, MY_MODEL / "cache.yaml") as handle:
        denoise(model, torch.randn(1, 16, 4))
    assert list(handle.regions["middle"].modules) == [f"blocks.{index}" for index in range(2, 7)]
    per_block = [sum(call is block for call in calls) for block in model.blocks]
    assert per_block == [20, 20, 7, 7, 7, 7, 7, 20]


def tiny_text_to_image() -> Any:
    """An offline stand-in for Stable Diffusion 1.5: its UNet layout at tiny widths, its
    default scheduler (PNDM), batched classifier-free guidance, PIL images out."""
    import PIL.Image
    from diffusers import DiffusionPipeline, ImagePipelineOutput, PNDMScheduler

    class TinyTextToImage(DiffusionPipeline):
        def __init__(self, unet: nn.Module, scheduler: Any):
            super().__init__()
            self.register_modules(unet=unet, scheduler=scheduler)

        def to(self, *args: Any, **kwargs: Any) -> TinyTextToImage:
            return self  # stays on the CPU

        @torch.no_grad()
        def __call__(self, prompt: str, num_inference_steps: int = 50, guidance_scale: float = 7.5) -> Any:
            generator = torch.Generator().manual_seed(len(prompt))
            text = torch.randn(1, 4, 8, generator=generator)
            context = torch.cat([torch.zeros_like(text), text])
            latents = torch.randn(1, 4, 8, 8, generator=generator)
            self.scheduler.set_timesteps(num_inference_steps)
            for timestep in self.scheduler.timesteps:
                noise = self.unet(torch.cat([latents] * 2), timestep, encoder_hidden_states=context).sample
                uncond, cond = noise.chunk(2)
                latents = self.scheduler.step(uncond + guidance_scale * (cond - uncond), timestep, latents).prev_sample
            pixels = latents[:, :3].clamp(-1, 1).add(1).mul(127.5).byte().permute(0, 2, 3, 1).numpy()
            return ImagePipelineOutput(images=[PIL.Image.fromarray(image) for image in pixels])

    return TinyTextToImage(tiny_sd_unet(), PNDMScheduler(skip_prk_steps=True))


def test_get_started_example_runs_as_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Get started lines, unchanged, with the hub download replaced by the stand-in."""
    from diffusers import DiffusionPipeline

    pipe = tiny_text_to_image()
    unet_forward = pipe.unet.forward
    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", lambda *args, **kwargs: pipe)
    monkeypatch.chdir(tmp_path)
    printed = run_example(DOCS_SRC / "get_started.py", capsys, monkeypatch)
    assert printed == (DOCS_SRC / "get_started.txt").read_text(encoding="utf-8")
    assert (tmp_path / "astronaut.png").is_file()
    assert pipe.unet.forward == unet_forward and "forward" not in vars(pipe.unet)
