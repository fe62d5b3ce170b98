"""Fidelity of cached against uncached outputs, and compute shares counted in FLOPs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cachekit.modules import get_submodule
from cachekit.region import Region


def relative_l1(output: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|output - reference| / mean|reference|``: 0 is identical.

    Computed in float32 on the tensors' device (one host sync), cheap enough for a probe.
    """
    reference = reference.float()
    scale = reference.abs().mean().clamp_min(torch.finfo(torch.float32).tiny)
    return float((output.float() - reference).abs().mean() / scale)


def psnr(output: torch.Tensor, reference: torch.Tensor, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` when identical.

    ``data_range`` defaults to the reference's max minus min (latents have no fixed range).
    """
    reference = reference.double()
    mse = float(((output.double() - reference) ** 2).mean())
    if mse == 0:
        return math.inf
    span = float(reference.max() - reference.min()) if data_range is None else data_range
    return 10 * math.log10(span**2 / mse)


def ssim(output: torch.Tensor, reference: torch.Tensor, data_range: float | None = None, window: int = 7) -> float:
    """Mean structural similarity of two image batches ``(N, C, H, W)`` (1 is identical).

    Uses a Gaussian window (sigma 1.5) as in Wang et al. 2004, clipped to the image size.
    """
    if output.dim() != 4 or output.shape != reference.shape:
        raise ValueError(
            f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(output.shape)} and {tuple(reference.shape)}"
        )
    x, y = output.double(), reference.double()
    span = float(y.max() - y.min()) if data_range is None else data_range
    size = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).expand(x.shape[1], 1, size, size)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, kernel, groups=x.shape[1])

    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def module_flops(
    model: nn.Module, paths: Iterable[str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, dict[str, int]]:
    """Run one forward under torch's FLOP counter: total FLOPs and FLOPs inside each module path.

    A module's count is everything that ran between its entry and exit (its submodules included).
    """
    counter = FlopCounterMode(display=False)
    inside = dict.fromkeys(paths, 0)
    started: dict[str, int] = {}
    hooks = []
    for path in inside:
        module = get_submodule(model, path)

        def before(*_: Any, path: str = path) -> None:
            started[path] = counter.get_total_flops()

        def after(*_: Any, path: str = path) -> None:
            inside[path] += counter.get_total_flops() - started.pop(path)

        hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        with counter, torch.no_grad():
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops(), inside


def region_flop_shares(
    model: nn.Module, regions: Iterable[Region], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, float]:
    """Each region's share of one forward's FLOPs, in [0, 1], by region name."""
    regions = list(regions)
    paths = {path for region in regions for path in region.modules}
    total, inside = module_flops(model, paths, args, kwargs)
    total = max(total, 1)
    return {region.name: sum(inside[path] for path in region.modules) / total for region in regions}


def computed_flop_share(region_shares: dict[str, float], computed_shares: dict[str, float]) -> float:
    """Share of the uncached FLOPs a cached run still computes.

    ``region_shares`` are the regions' shares of a forward; ``computed_shares`` the share of
    calls on which each region refreshed (:attr:`~cachekit.engine.stats.RegionStats.computed_share`).
    """
    skipped = sum(share * (1 - computed_shares.get(name, 1.0)) for name, share in region_shares.items())
    return 1 - skipped
