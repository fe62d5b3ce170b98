"""ControlNet's residuals are honoured on reuse steps.

diffusers' UNet adds ``down_block_additional_residuals`` to the skip tensors after its down
blocks and ``mid_block_additional_residual`` after its mid block, outside every module a
branch holds. So on a reuse step the skips that still run receive this step's ControlNet
residual, and only what lies inside the branch is the refresh step's. These tests rebuild
the reuse step's output by hand from the UNet's own submodules and compare.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import cachekit
from tests.unet_models import one_thread, tiny_controlnet, tiny_sd_unet  # noqa: F401  (autouse fixture)

REFRESH_T, REUSE_T = torch.tensor(999), torch.tensor(500)


def step_inputs(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(1, 4, 8, 8, generator=generator),
        "encoder_hidden_states": torch.randn(1, 77, 8, generator=generator),
        "control": torch.rand(1, 3, 8, 8, generator=generator),
    }


def residuals(controlnet: nn.Module, inputs: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, Any]:
    """The UNet keyword arguments carrying ``controlnet``'s residuals for one call."""
    down, mid = controlnet(
        inputs["sample"],
        t,
        encoder_hidden_states=inputs["encoder_hidden_states"],
        controlnet_cond=inputs["control"],
        return_dict=False,
    )
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def unet_call(unet: nn.Module, inputs: dict[str, torch.Tensor], t: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
    return unet(inputs["sample"], t, encoder_hidden_states=inputs["encoder_hidden_states"], **extra).sample


def output_of(module: nn.Module, run: Any) -> Any:
    """What ``module`` returned during ``run()``."""
    seen: list[Any] = []
    hook = module.register_forward_hook(lambda _module, _args, output: seen.append(output))
    try:
        run()
    finally:
        hook.remove()
    return seen[-1]


@torch.no_grad()
def cached_reuse_step(branch: str) -> tuple[nn.Module, dict[str, Any], torch.Tensor]:
    """Two UNet calls with ControlNet at interval 2: refresh at t=999, reuse at t=500.

    Returns the UNet, the residuals of both steps, and the cached output of the reuse step.
    """
    unet, controlnet = tiny_sd_unet(), tiny_controlnet()
    first, second = step_inputs(1), step_inputs(2)
    steps = {
        "refresh": (first, REFRESH_T, residuals(controlnet, first, REFRESH_T)),
        "reuse": (second, REUSE_T, residuals(controlnet, second, REUSE_T)),
    }
    with cachekit.cached(unet, {"policy": {"kind": "uniform", "interval": 2}, "regions": [branch]}) as handle:
        unet_call(unet, *steps["refresh"])
        output = unet_call(unet, *steps["reuse"])
    assert handle.stats[branch].reuses == 1
    return unet, steps, output


@torch.no_grad()
def test_branch0_reuse_feeds_this_steps_residual_to_the_shallow_skip() -> None:
    """Branch 0 on a reuse step: ``conv_in``'s skip plus this step's first residual, joined
    with the deep output stored at the refresh, through the last up layer and the head."""
    unet, steps, cached = cached_reuse_step("branch0")
    last_up = unet.up_blocks[-1]
    exit_module = last_up.attentions[-2]  # branch 0 ends before the layer that takes skip 0
    (deep,) = output_of(exit_module, lambda: unet_call(unet, *steps["refresh"]))  # called with return_dict=False

    def by_hand(down_residual: torch.Tensor) -> torch.Tensor:
        inputs, t, _ = steps["reuse"]
        emb = unet.time_embedding(unet.get_time_embed(sample=inputs["sample"], timestep=t))
        skip = unet.conv_in(inputs["sample"]) + down_residual
        hidden = last_up.resnets[-1](torch.cat([deep, skip], dim=1), emb)
        hidden = last_up.attentions[-1](
            hidden, encoder_hidden_states=inputs["encoder_hidden_states"], return_dict=False
        )[0]
        return unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))

    this_step = by_hand(steps["reuse"][2]["down_block_additional_residuals"][0])
    stale = by_hand(steps["refresh"][2]["down_block_additional_residuals"][0])
    torch.testing.assert_close(cached, this_step, atol=1e-6, rtol=0)
    assert not torch.allclose(cached, stale, atol=1e-3), "the shallow residual made no difference"


@torch.no_grad()
def test_deepest_branch_reuse_adds_this_steps_mid_residual() -> None:
    """Branch 11 holds only the mid block: its stored output gets this step's mid residual,
    and every skip gets this step's down residuals."""
    unet, steps, cached = cached_reuse_step("branch11")
    stored_mid = output_of(unet.mid_block, lambda: unet_call(unet, *steps["refresh"]))
    swap = unet.mid_block.register_forward_hook(lambda *_: stored_mid)
    try:
        by_hand = unet_call(unet, *steps["reuse"])
        stale_mid = {
            **steps["reuse"][2],
            "mid_block_additional_residual": steps["refresh"][2]["mid_block_additional_residual"],
        }
        stale = unet_call(unet, steps["reuse"][0], REUSE_T, stale_mid)
    finally:
        swap.remove()
    torch.testing.assert_close(cached, by_hand, atol=1e-6, rtol=0)
    assert not torch.allclose(cached, stale, atol=1e-3), "the mid residual made no difference"
