"""An experiment's results: one row per setting, the summary table, and the files in the output folder.

The output folder holds ``results.json`` (the rows with the model and sampling sections),
``results.csv`` (the rows), ``samples/<setting>.pt`` (every sample, so that a rerun compares
against the same baseline), ``grids/<setting>.png`` and ``pareto.png``. Each is written
atomically (:mod:`cachekit.experiments.atomic_file`): a killed run never leaves one half written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cachekit.experiments.atomic_file import atomic_path, write_text
from cachekit.experiments.errors import ExperimentError
from cachekit.experiments.speedup import SPEED_COLUMNS

_HEAD = (
    "setting",
    "policy",
    "forecast",
    "regions",
    "samples",
    "loop_seconds",
    "speedup",
    "refreshes",
    "calls",
    "flops_share",
)
ROW_HEAD = (*_HEAD, *SPEED_COLUMNS, "forecast")
"""The first columns of every row, in order; the metrics follow, then ``fingerprint``."""


@dataclass
class ExperimentResults:
    """The rows of an experiment (one per setting, baseline first) and where they were written."""

    rows: list[dict[str, Any]]
    output_dir: Path
    fidelity_metric: str

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and formatted cells of the summary table printed by ``cachekit run``."""
        columns = metric_columns(self.rows)
        headers = ["setting", "speedup", "refreshes", "FLOPs", *columns]
        body = [
            [
                row["setting"],
                _speedup_cell(row),
                _fmt(row["refreshes"], "{:.1f}"),
                _fmt(row["flops_share"], "{:.0%}"),
                *(_fmt(row.get(key)) for key in columns),
            ]
            for row in self.rows
        ]
        return headers, body

    @property
    def noisy(self) -> list[str]:
        """The settings whose speedup beat their FLOP ceiling by more than its spread (see
        :mod:`cachekit.experiments.speedup`): timed on a machine too busy, and left off the Pareto front."""
        return [row["setting"] for row in self.rows if row.get("noisy")]

    def noise_note(self) -> str | None:
        """One line saying which settings were timed too noisily and what to do, or ``None``."""
        if not self.noisy:
            return None
        names = ", ".join(repr(name) for name in self.noisy)
        return (
            f"noisy timing: {names} beat the FLOP ceiling by more than the spread of the timing (marked noisy, "
            "left off the Pareto front): the machine was too busy to time; rerun on an idle machine with --fresh, "
            "or raise timing.repeats"
        )

    def where(self) -> str:
        """Where the result files are, for the end of ``cachekit run``."""
        files = ResultFiles(self.output_dir)
        return (
            f"results: {files.results_json} and {files.results_csv}\n"
            f"sample grids: {self.output_dir / 'grids'}/ (one PNG per setting)\n"
            f"speedup against {self.fidelity_metric}, Pareto front marked: {files.pareto}"
        )


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The measured metrics of ``rows`` (fidelity to the baseline, then the scorer's): every column
    of the first row but the head and the fingerprint."""
    return [key for key in rows[0] if key not in ROW_HEAD and key != "fingerprint"]


@dataclass(frozen=True)
class ResultFiles:
    """The files of one output folder."""

    folder: Path

    @property
    def results_json(self) -> Path:
        """``results.json``: the rows, the model and sampling sections, the fidelity metric."""
        return self.folder / "results.json"

    @property
    def results_csv(self) -> Path:
        """``results.csv``: the rows."""
        return self.folder / "results.csv"

    @property
    def pareto(self) -> Path:
        """``pareto.png``: speedup against fidelity, the Pareto front marked."""
        return self.folder / "pareto.png"

    def grid(self, setting: str) -> Path:
        """The PNG grid of one setting's first samples."""
        return self.folder / "grids" / f"{slug(setting)}.png"

    def samples(self, setting: str) -> Path:
        """The saved samples of one setting."""
        return self.folder / "samples" / f"{slug(setting)}.pt"

    def save_samples(self, setting: str, images: torch.Tensor) -> None:
        """Save every sample of ``setting``."""
        with atomic_path(self.samples(setting)) as path:
            torch.save(images.contiguous(), path)

    def load_samples(self, setting: str) -> torch.Tensor:
        """The samples of ``setting`` saved by :meth:`save_samples`."""
        return torch.load(self.samples(setting), weights_only=True)

    def saved_rows(self, fingerprint: str) -> dict[str, dict[str, Any]]:
        """The rows of ``results.json`` by setting, when it holds the same model and sampling (``fingerprint``)."""
        if not self.results_json.is_file():
            return {}
        try:
            saved = json.loads(self.results_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ExperimentError(
                f"cannot read the earlier results {str(self.results_json)!r} ({error}); "
                "delete the file or run with --fresh to start over"
            ) from None
        if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
            return {}
        return {row["setting"]: row for row in saved.get("rows", [])}

    def write(self, results: ExperimentResults, header: dict[str, Any]) -> None:
        """Write ``results.csv`` and then ``results.json`` (``header``, the fidelity metric and the rows).

        ``results.json`` is the record a rerun continues from, so it goes last: once it holds a
        row, ``results.csv`` holds it too, wherever a run is stopped after that."""
        columns = list(dict.fromkeys(key for row in results.rows for key in row))
        with atomic_path(self.results_csv) as path, path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(results.rows)
        document = {**header, "fidelity_metric": results.fidelity_metric, "rows": results.rows}
        write_text(self.results_json, json.dumps(document, indent=2) + "\n")


def slug(name: str) -> str:
    """A file-name-safe form of a setting name."""
    return re.sub(r"[^A-Za-z0-9.=_+-]+", "_", name).strip("_") or "setting"


def digest(data: Any) -> str:
    """A short, stable fingerprint of JSON-able ``data``: equal data, equal digest."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _speedup_cell(row: dict[str, Any]) -> str:
    """``2.02x (1.95-2.10)``: the median and the spread of a cached setting; ``noisy`` appended when flagged."""
    cell = _fmt(row["speedup"], "{:.2f}x")
    if row.get("policy") != "none" and row.get("speedup_min") is not None:
        cell += f" ({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
    return cell + (" noisy" if row.get("noisy") else "")


def _fmt(value: Any, pattern: str = "{:.4g}") -> str:
    return "-" if value is None else pattern.format(value)
