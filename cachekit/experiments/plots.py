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
from cachekit.experiments.atomic_file import atomic_path


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
    scale = max(1, min_side // max(images.shape[-2:]))
    images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = image_grid(images)
    plt = pyplot()
    with atomic_path(path) as temporary:
        if grid.shape[-1] == 1:
            plt.imsave(temporary, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            plt.imsave(temporary, grid)


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


def front_rows(rows: Sequence[dict[str, Any]], metric: str, higher_is_better: bool) -> list[dict[str, Any]]:
    """The rows on the Pareto front of speedup against ``metric``, by increasing speed.

    Rows marked ``noisy`` (a speedup their FLOPs cannot reach: a busy machine's timing) are
    left off; every row given must have a finite speedup and ``metric``.
    """
    timed = [row for row in rows if not row.get("noisy")]
    return [timed[i] for i in pareto_front([(row["speedup"], row[metric]) for row in timed], higher_is_better)]


def policy_kind(row: dict[str, Any]) -> str:
    """The policy kind of a result row (``none`` for the uncached runs)."""
    policy = row.get("policy", "none")
    return "none" if policy == "none" else str(json.loads(policy).get("kind", "?"))


def legend_group(row: dict[str, Any]) -> str:
    """A row's legend entry: its policy kind, and its forecaster when it forecasts."""
    forecast = row.get("forecast", "none")
    return policy_kind(row) if forecast in ("none", None) else f"{policy_kind(row)}, forecast {forecast}"


def save_pareto(
    rows: Sequence[dict[str, Any]], metric: str, higher_is_better: bool, path: Path, noise_floor: str | None = None
) -> None:
    """Plot speedup against ``metric`` for every row that has both, marking the Pareto front.

    Points are coloured by policy kind, with error bars from the speedup's min-max spread
    (``speedup_min``, ``speedup_max``), and the front's points are labelled with their setting
    names. Rows marked ``noisy`` (a speedup above what their FLOPs allow) are drawn hollow and
    left off the front. The row named ``noise_floor`` (the baseline on other seeds) is drawn as
    a band from the baseline's value to its own: differences inside the band are run-to-run
    noise. A metric spanning more than a factor 20 gets a log axis.
    """
    usable = [row for row in rows if _finite(row.get("speedup")) and _finite(row.get(metric))]
    noise = [row[metric] for row in usable if row["setting"] == noise_floor]
    usable = [row for row in usable if row["setting"] != noise_floor]
    timed = [row for row in usable if not row.get("noisy")]
    noisy = [row for row in usable if row.get("noisy")]
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    if noise and usable:
        low, high = sorted((usable[0][metric], noise[0]))
        axes.axhspan(low, high, color="tab:gray", alpha=0.25, label="run-to-run noise (baseline, two seed sets)")
    for kind in dict.fromkeys(legend_group(row) for row in timed):
        group = [row for row in timed if legend_group(row) == kind]
        marker = "^" if "forecast" in kind else "o"  # forecasting settings stand apart in the legend
        points = axes.scatter(
            [r["speedup"] for r in group], [r[metric] for r in group], label=kind, zorder=2, alpha=0.8, marker=marker
        )
        _spread_bars(axes, group, metric, points.get_facecolor()[0])
    if noisy:
        axes.scatter(
            [r["speedup"] for r in noisy],
            [r[metric] for r in noisy],
            facecolors="none",
            edgecolors="tab:gray",
            zorder=2,
            label="noisy timing (off the front)",
        )
        _spread_bars(axes, noisy, metric, "tab:gray")
    front = front_rows(usable, metric, higher_is_better)
    if front:
        axes.plot(
            [r["speedup"] for r in front], [r[metric] for r in front], color="tab:red", zorder=3, label="Pareto front"
        )
        for index, row in enumerate(front):  # labels of neighbouring points step apart, so none overlaps
            point = (row["speedup"], row[metric])
            offset = (6, 4 + 11 * (index % 3)) if index % 2 == 0 else (6, -10 - 11 * (index % 3))
            axes.annotate(row["setting"], point, textcoords="offset points", xytext=offset, fontsize=7)
    if usable and not noise:
        axes.set_title(
            "no noise band: set sampling.noise_floor to measure run-to-run noise (FD from few samples is noisy)",
            fontsize=8,
        )
    if usable:
        values = [row[metric] for row in usable]
        if min(values) > 0 and max(values) > 20 * min(values):
            axes.set_yscale("log")
    axes.legend(loc="best", fontsize=8)
    axes.set_xlabel("speedup of the denoising loop (x)")
    axes.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    axes.grid(alpha=0.3)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _spread_bars(axes: Any, rows: Sequence[dict[str, Any]], metric: str, color: Any) -> None:
    """Horizontal error bars from each row's ``speedup_min`` to its ``speedup_max``, where measured."""
    measured = [row for row in rows if _finite(row.get("speedup_min")) and _finite(row.get("speedup_max"))]
    if not measured:
        return
    below = [row["speedup"] - row["speedup_min"] for row in measured]
    above = [row["speedup_max"] - row["speedup"] for row in measured]
    axes.errorbar(
        [row["speedup"] for row in measured],
        [row[metric] for row in measured],
        xerr=[below, above],
        fmt="none",
        ecolor=color,
        elinewidth=1,
        capsize=2,
        zorder=1,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
