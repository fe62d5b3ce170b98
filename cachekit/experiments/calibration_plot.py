"""The calibration heatmap: each region's error matrix, steps by steps, with the chosen schedule.

Row ``i`` is the last refresh, column ``j`` the step served from it; the colour is the error
(log scale). The chosen schedule's refreshes are the white lines, and the cells it actually
serves (each reuse step from its last refresh) are marked. Needs matplotlib (the
``experiments`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cachekit.calibration.file import CalibrationFile
from cachekit.experiments.atomic_file import atomic_path
from cachekit.experiments.plots import pyplot


def served_cells(steps: tuple[int, ...], num_steps: int) -> tuple[list[int], list[int]]:
    """``(last refreshes, served steps)`` of every reuse step of the schedule ``steps``."""
    rows, columns = [], []
    latest = 0
    for step in range(num_steps):
        if step in steps:
            latest = step
            continue
        rows.append(latest)
        columns.append(step)
    return rows, columns


def save_heatmap(calibration: CalibrationFile, path: Path) -> Path:
    """Draw one panel per region of ``calibration`` into the PNG at ``path``; returns it."""
    plt = pyplot()
    names = list(calibration.regions)
    figure, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        region = calibration.regions[name]
        matrix = np.array([[np.nan if value is None else value for value in row] for row in region.errors])
        positive = matrix[np.isfinite(matrix) & (matrix > 0)]
        shown = np.log10(np.where(matrix > 0, matrix, np.nan))
        image = axis.imshow(shown, origin="upper", cmap="viridis", interpolation="nearest")
        figure.colorbar(image, ax=axis, fraction=0.046, label="log10 relative L1 error")
        steps = region.schedule.steps
        for step in steps:
            axis.axhline(step, color="white", linewidth=0.6, alpha=0.7)
        rows, columns = served_cells(steps, calibration.num_steps)
        axis.scatter(columns, rows, s=9, marker="s", facecolors="none", edgecolors="red", linewidths=0.8)
        axis.set_xlabel("served step j")
        axis.set_ylabel("last refresh i")
        uniform = region.uniform
        axis.set_title(
            f"{name}, forecast {calibration.forecast}\n"
            f"refresh {list(steps)}\n"
            f"total error {region.schedule.total_error:.3g} (uniform {list(uniform.steps)}: {uniform.total_error:.3g})",
            fontsize=8,
        )
        if not len(positive):
            axis.text(0.5, 0.5, "no error measured", transform=axis.transAxes, ha="center")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    return path
