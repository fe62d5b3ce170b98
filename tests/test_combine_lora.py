"""cachekit beside peft LoRA (diffusers' PEFT integration), on a tiny Stable Diffusion UNet.

One handle stays enabled while the LoRA state changes between calls: an adapter loaded, its
scale changed, another adapter switched to, hot-swapped, fused, unfused. No cache may leak
from one call to the next: every call must equal a fresh pipeline brought to the same LoRA
state, with cachekit enabled on it afresh. Disabling restores the uncached output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

import cachekit
from tests.unet_models import one_thread, prompt_embeds, sd_pipeline, tiny_sd_unet  # noqa: F401  (autouse fixture)

UNIFORM = {"policy": {"kind": "uniform", "interval": 3}}
ALWAYS = {"policy": {"kind": "uniform", "interval": 1}}


def generate(pipe: Any) -> torch.Tensor:
    """The final latents of one seeded 6-step call (no CFG, to keep it fast)."""
    generator = torch.Generator().manual_seed(0)
    call = {**prompt_embeds(8), "guidance_scale": 1.0, "output_type": "latent", "generator": generator}
    return pipe(**call, num_inference_steps=6).images


def add_lora(unet: torch.nn.Module, name: str, seed: int) -> None:
    """A rank-4 LoRA on every attention projection, drawn at random (so that it is felt)."""
    torch.manual_seed(seed)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False), name)


def lora_weights(seed: int) -> dict[str, torch.Tensor]:
    """The state dict of a LoRA like :func:`add_lora`'s, as a saved adapter holds it."""
    unet = tiny_sd_unet()
    add_lora(unet, "saved", seed)
    return get_peft_model_state_dict(unet, adapter_name="saved")


def hotswap(unet: torch.nn.Module, name: str, seed: int) -> None:
    """peft's hot-swap: the weights of adapter ``name`` replaced in place, no module changed."""
    unet.load_lora_adapter(lora_weights(seed), adapter_name=name, hotswap=True, prefix=None)


STATES: list[tuple[str, Callable[[torch.nn.Module], Any]]] = [
    ("adapter a loaded", lambda unet: add_lora(unet, "a", seed=1)),
    ("a at scale 0.5", lambda unet: unet.set_adapters(["a"], weights=[0.5])),
    ("adapter b loaded and active", lambda unet: (add_lora(unet, "b", seed=2), unet.set_adapters("b"))),
    ("b hot-swapped", lambda unet: hotswap(unet, "b", seed=3)),
    ("b fused", lambda unet: unet.fuse_lora()),
    ("b unfused", lambda unet: unet.unfuse_lora()),
]
"""Each change of LoRA state, applied in turn to the same UNet."""


def pipeline_in_state(count: int) -> Any:
    """A fresh pipeline brought to the state after the first ``count`` changes."""
    pipe = sd_pipeline()
    for _, change in STATES[:count]:
        change(pipe.unet)
    return pipe


@pytest.mark.slow
# peft warns when a second adapter is added to a model that has one: that is what the test does
@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute in the model:UserWarning")
def test_each_call_equals_a_fresh_run_with_the_same_lora_state() -> None:
    pipe = sd_pipeline()
    handle = cachekit.enable(pipe, UNIFORM)
    outputs = []
    for count, (name, change) in enumerate(STATES, start=1):
        change(pipe.unet)
        cached = generate(pipe)
        assert handle.stats.refresh_steps("branch0") == [0, 3], name
        with cachekit.cached(fresh := pipeline_in_state(count), UNIFORM):
            assert torch.equal(cached, generate(fresh)), f"{name}: a cache outlived the LoRA state it was made in"
        outputs.append(cached)
    for (name, _), before, after in zip(STATES[1:4], outputs[:3], outputs[1:4], strict=True):
        assert not torch.equal(before, after), f"{name}: the change had no effect, so the check above proves nothing"
    handle.disable()
    uncached = generate(pipeline_in_state(len(STATES)))
    assert torch.equal(generate(pipe), uncached), "disable() did not restore the uncached output"
    with cachekit.cached(pipe, ALWAYS):
        assert torch.equal(generate(pipe), uncached), "always refreshing changed the output"
