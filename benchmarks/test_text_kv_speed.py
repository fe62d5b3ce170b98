"""Speed of ``text_kv`` alone (exact reuse of cross-attention keys and values) on an
SD-1.5-shaped UNet and a PixArt-shaped DiT, against no cache.

Run: ``OMP_NUM_THREADS=1 pytest benchmarks/test_text_kv_speed.py --benchmark-enable -s``. Each
model runs a bare denoising loop of :data:`STEPS` steps with batched CFG (batch 2, one
context), random weights, nothing downloaded. No cache and ``text_kv`` alone are timed side
by side in interleaved rounds, in CPU time on one thread. Printed per model: the median
speedup with the spread of the per-round ratios (min to max), the share of one forward's
FLOPs in the key and value projections (the ceiling is ``1 / (1 - share * (1 - 1/STEPS))``),
and whether the output equals the uncached one bit for bit.

diffusers 0.42's own ``TextKVCacheConfig`` hooks ``NucleusMoEImageTransformerBlock`` only: on
both models here it installs no hook at all (checked and printed), so there is nothing of it
to time beside cachekit.

Shapes (reduced so a laptop CPU runs them in about a minute; environment variables change them):

* UNet: SD 1.5's block layout and 768-wide, 77-token context; widths 64/128/256/256
  (``CACHEKIT_TEXT_KV_UNET_WIDTHS=full``: 320/640/1280/1280), 16x16 latent
  (``CACHEKIT_TEXT_KV_LATENT``);
* DiT: PixArt-α's block (cross attention to 120 T5 tokens of 4096 channels, adaLN-single),
  8 blocks of width 384 (6 heads of 64) on a 16x16 latent in 2x2 patches;
* ``CACHEKIT_TEXT_KV_STEPS`` (default 20), ``CACHEKIT_TEXT_KV_ROUNDS`` (default 5).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import cachekit
from benchmarks.device import current
from benchmarks.sidebyside import interleaved_times
from cachekit.flops import region_flop_shares
from tests.dit_models import diffusers_model
from tests.unet_models import SD15_WIDTHS, sd15_unet

STEPS = int(os.environ.get("CACHEKIT_TEXT_KV_STEPS", "20"))
ROUNDS = int(os.environ.get("CACHEKIT_TEXT_KV_ROUNDS", "5"))
LATENT = int(os.environ.get("CACHEKIT_TEXT_KV_LATENT", "16"))
UNET_WIDTHS = SD15_WIDTHS if os.environ.get("CACHEKIT_TEXT_KV_UNET_WIDTHS") == "full" else (64, 128, 256, 256)


def _sd15() -> tuple[nn.Module, dict[str, Any], str]:
    unet = sd15_unet(UNET_WIDTHS, cross_attention_dim=768, sample_size=LATENT)
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "sample": torch.randn(2, 4, LATENT, LATENT, generator=generator),
        "encoder_hidden_states": torch.randn(2, 77, 768, generator=generator),
    }
    return unet, inputs, "sample"


def _pixart() -> tuple[nn.Module, dict[str, Any], str]:
    model = diffusers_model(
        "PixArtTransformer2DModel", num_attention_heads=6, attention_head_dim=64, in_channels=4, out_channels=8,
        num_layers=8, cross_attention_dim=384, caption_channels=4096, sample_size=LATENT, patch_size=2,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(2, 4, LATENT, LATENT, generator=generator),
        "encoder_hidden_states": torch.randn(2, 120, 4096, generator=generator),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }
    return model, inputs, "hidden_states"


MODELS: dict[str, Callable[[], tuple[nn.Module, dict[str, Any], str]]] = {
    f"SD 1.5 layout UNet, widths {UNET_WIDTHS}": _sd15,
    "PixArt-shaped DiT, 8 blocks of 384": _pixart,
}


@torch.no_grad()
def _loop(model: nn.Module, inputs: dict[str, Any], sample_key: str) -> torch.Tensor:
    sample = inputs[sample_key]
    for timestep in torch.linspace(999, 0, STEPS, device=sample.device):
        output = model(**{**inputs, sample_key: sample, "timestep": timestep.expand(len(sample))})[0]
        sample = sample - 0.05 * output[:, : sample.shape[1]]
    return sample


def _diffusers_text_kv_hooks(model: nn.Module) -> int:
    """Blocks diffusers' ``TextKVCacheConfig`` would hook on ``model`` (applied to a hook count only)."""
    from diffusers.hooks import TextKVCacheConfig, apply_text_kv_cache
    from diffusers.hooks.hooks import HookRegistry

    apply_text_kv_cache(model, TextKVCacheConfig())
    hooked = sum(1 for _, module in model.named_modules() if module is not model and hasattr(module, "_diffusers_hook"))
    registry = HookRegistry.check_if_exists_or_initialize(model)
    for name in list(registry.hooks):
        registry.remove_hook(name, recurse=True)
    return hooked


def test_text_kv_speed(benchmark: Any) -> None:
    torch.set_num_threads(1)
    rows = {}
    for label, build in MODELS.items():
        model, inputs, sample_key = build()
        model, inputs = current().model(model), current().inputs(inputs)  # --device, --dtype
        region = next(r for r in cachekit.load_plugins().hook.cachekit_regions(model=model) if r.name == "text_kv")
        share = region_flop_shares(
            model, [region], (), {**inputs, "timestep": current().inputs(torch.full((2,), 500.0))}
        )["text_kv"]
        plain = copy.deepcopy(model)  # the same weights, never cached
        uncached = _loop(plain, inputs, sample_key)
        with cachekit.cached(model, {"regions": ["text_kv"], "num_steps": STEPS}):
            exact = torch.equal(_loop(model, inputs, sample_key), uncached)
            candidates = {
                "none": lambda: _loop(plain, inputs, sample_key),  # noqa: B023  (called in this iteration only)
                "text_kv": lambda: _loop(model, inputs, sample_key),  # noqa: B023
            }
            times = interleaved_times(candidates, rounds=ROUNDS, clock=time.process_time)
        ratios = sorted(none / cached for none, cached in zip(times["none"], times["text_kv"], strict=True))
        median = ratios[len(ratios) // 2]
        ceiling = 1 / (1 - share * (1 - 1 / STEPS))
        hooked = _diffusers_text_kv_hooks(model)
        rows[label] = {"speedup": median, "spread": (ratios[0], ratios[-1]), "flop_share": share, "exact": exact}
        print(
            f"\n{label}: {STEPS} steps, batched CFG; text_kv {median:.3f}x (rounds {ratios[0]:.3f} to "
            f"{ratios[-1]:.3f}, {ROUNDS} interleaved rounds of CPU time), K/V projections {100 * share:.1f}% of "
            f"the FLOPs (ceiling {ceiling:.3f}x), output bit-identical: {exact}; diffusers TextKVCacheConfig "
            f"hooks {hooked} blocks here"
        )
        assert exact
    benchmark.extra_info.update(rows)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
