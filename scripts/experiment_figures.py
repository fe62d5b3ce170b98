"""Copy the figures of the digits sweeps into the docs and draw FD against the refresh budget.

Run after the two example sweeps (their default output folders, or give others)::

    cachekit run examples/digits_unet_sweep.yaml
    cachekit run examples/digits_dit_sweep.yaml
    python scripts/experiment_figures.py runs/digits-unet-sweep runs/digits-dit-sweep

Writes ``docs/assets/experiments/``: each sweep's ``pareto.png``, a few sample grids, and
``unet_budget.png`` (FD of the uncached and of each policy kind, with and without the
linear forecast, against refreshes per generation, at branch 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from cachekit.experiments.plots import policy_kind, pyplot

DOCS = Path(__file__).parents[1] / "docs" / "assets" / "experiments"
GRIDS = {
    "unet": [
        "none",
        "uniform_interval=2_branch0",
        "uniform_interval=5_branch0",
        "uniform_interval=10_branch0",
        "nonuniform_center=10_power=2.0_interval=10_branch0",
        "similarity_threshold=0.3_branch0",
        "nonuniform_interval=10_power=3.0_center=10_forecast=linear_branch0",
    ],
    "dit": ["none", "uniform_interval=5_blocks_1_6", "similarity_probe=entry_residual_threshold=0.4_blocks_1_6"],
}


def budget_plot(rows: list[dict], path: Path) -> None:
    """FD against refreshes per generation for each policy kind at branch 0, the baseline's noise as a band."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2))
    baseline = next(row for row in rows if row["setting"] == "none")
    noise = next((row for row in rows if row["setting"] == "none (seeds B)"), None)
    if noise is not None:
        low, high = sorted((baseline["fd"], noise["fd"]))
        axes.axhspan(low, high, color="tab:gray", alpha=0.25, label="uncached, two seed sets")
    for kind in ("uniform", "nonuniform", "similarity"):
        for forecast in (False, True):
            group = sorted(
                (
                    row
                    for row in rows
                    if policy_kind(row) == kind
                    and row["regions"] == "branch0"
                    and ("forecast=linear" in row["setting"]) == forecast
                ),
                key=lambda row: (row["refreshes"], row["fd"]),
            )
            label = f"{kind}, linear forecast" if forecast else kind
            style = {"marker": "s", "linestyle": "--"} if forecast else {"marker": "o"}
            if group:
                axes.plot([r["refreshes"] for r in group], [r["fd"] for r in group], label=label, **style)
    axes.set_yscale("log")
    axes.set_xlabel("refreshes of branch 0 per generation (of 50 steps)")
    axes.set_ylabel("FD, 1024 samples (lower is better)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    """Copy the figures of the two sweeps and draw the budget plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("unet", type=Path, help="output folder of the digits UNet sweep")
    parser.add_argument("dit", type=Path, help="output folder of the digits DiT sweep")
    args = parser.parse_args()
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, folder in (("unet", args.unet), ("dit", args.dit)):
        shutil.copyfile(folder / "pareto.png", DOCS / f"{name}_pareto.png")
        for grid in GRIDS[name]:
            shutil.copyfile(folder / "grids" / f"{grid}.png", DOCS / f"{name}_{grid}.png")
    rows = json.loads((args.unet / "results.json").read_text(encoding="utf-8"))["rows"]
    budget_plot(rows, DOCS / "unet_budget.png")


if __name__ == "__main__":
    main()
