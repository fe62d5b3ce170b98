"""Figures of an experiment: sample grids and the speed-fidelity plot with its Pareto front.

Needs matplotlib (the ``experiments`` extra); drawn with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cachekit.errors import CachekitError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise CachekitError(
            "experiment figures need matplotlib; install it with: pip install 'cachekit[experiments]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: torch.Tensor, columns: int | None = None) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in ``[0, 1]`` into one ``(rows*H, columns*W, C)`` array, 1-pixel gaps."""
    images = images.clamp(0, 1).float()
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = torch.ones(channels, rows * (height + 1) - 1, columns * (width + 1) - 1)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + 1), (index % columns) * (width + 1)
        grid[:, top : top + height, left : left + width] = image
    return grid.permute(1, 2, 0).numpy()


def save_grid(images: torch.Tensor, path: Path, min_side: int = 64) -> None:
    """Save a grid of images as PNG (greyscale for one channel); other shapes are skipped.

    Images smaller than ``min_side`` pixels are enlarged by an integer factor (nearest
    neighbour) so that small samples stay visible.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = max(1, min_side // max(images.shape[-2:]))
    images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = image_grid(images)
    plt = pyplot()
    if grid.shape[-1] == 1:
        plt.imsave(path, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(path, grid)


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both speed (x, higher) and fidelity (y).

    Returned by increasing speed.
    """
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -sign * points[i][1]))
    front, best = [], -math.inf
    for index in order:
        if sign * points[index][1] > best:
            front.append(index)
            best = sign * points[index][1]
    return front[::-1]


def policy_kind(row: dict[str, Any]) -> str:
    """The policy kind of a result row (``none`` for the uncached runs)."""
    policy = row.get("policy", "none")
    return "none" if policy == "none" else str(json.loads(policy).get("kind", "?"))


def save_pareto(
    rows: Sequence[dict[str, Any]], metric: str, higher_is_better: bool, path: Path, noise_floor: str | None = None
) -> None:
    """Plot speedup against ``metric`` for every row that has both, marking the Pareto front.

    Points are coloured by policy kind and the front's points are labelled with their
    setting names. The row named ``noise_floor`` (the baseline on other seeds) is drawn as a
    band from the baseline's value to its own: differences inside the band are run-to-run
    noise. A metric spanning more than a factor 20 gets a log axis.
    """
    usable = [row for row in rows if _finite(row.get("speedup")) and _finite(row.get(metric))]
    noise = [row[metric] for row in usable if row["setting"] == noise_floor]
    usable = [row for row in usable if row["setting"] != noise_floor]
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    if noise and usable:
        low, high = sorted((usable[0][metric], noise[0]))
        axes.axhspan(low, high, color="tab:gray", alpha=0.25, label="run-to-run noise (baseline, two seed sets)")
    for kind in dict.fromkeys(policy_kind(row) for row in usable):
        group = [row for row in usable if policy_kind(row) == kind]
        axes.scatter([r["speedup"] for r in group], [r[metric] for r in group], label=kind, zorder=2, alpha=0.8)
    if usable:
        points = [(row["speedup"], row[metric]) for row in usable]
        front = pareto_front(points, higher_is_better)
        axes.plot(*zip(*(points[i] for i in front), strict=True), color="tab:red", zorder=3, label="Pareto front")
        for index in front:
            axes.annotate(
                usable[index]["setting"], points[index], textcoords="offset points", xytext=(5, 4), fontsize=7
            )
        values = [y for _, y in points]
        if min(values) > 0 and max(values) > 20 * min(values):
            axes.set_yscale("log")
    axes.legend(loc="best", fontsize=8)
    axes.set_xlabel("speedup of the denoising loop (x)")
    axes.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
