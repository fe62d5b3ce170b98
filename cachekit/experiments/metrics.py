"""Fidelity of cached against uncached samples: PSNR, SSIM and relative L1.

:func:`relative_l1` is the whole batch's relative L1 distance to the baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def relative_l1(output: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|output - reference| / mean|reference|`` over the whole tensors, in float32: 0 is identical."""
    reference = reference.float()
    scale = reference.abs().mean().clamp_min(torch.finfo(torch.float32).tiny)
    return float((output.float() - reference).abs().mean() / scale)


FIDELITY_METRICS: dict[str, bool] = {"psnr": True, "ssim": True, "relative_l1": False}
"""Fidelity to the baseline, by name: True when higher is better."""


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


def fidelity(images: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """Every metric of :data:`FIDELITY_METRICS` of ``images`` against the baseline's ``reference``.

    PSNR is the mean over samples (data range 1), ``None`` when every sample is identical;
    SSIM is ``None`` for samples that are not image batches ``(N, C, H, W)``.
    """
    values = [psnr(image, ref, data_range=1.0) for image, ref in zip(images, reference, strict=True)]
    finite = [value for value in values if math.isfinite(value)]
    return {
        "psnr": sum(finite) / len(finite) if finite else None,
        "ssim": ssim(images, reference, data_range=1.0) if images.dim() == 4 else None,
        "relative_l1": relative_l1(images, reference),
    }
