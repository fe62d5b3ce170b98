"""Similarity probes: the cheap signal a policy watches, and its drift between calls.

A probe turns what a region's call computes anyway (the entry input, the input of a module
before it) into one tensor per call. Its *drift* is the relative L1 change since the
previous call of the same context, measured per sample: one value per batch row, so a row's
decision never depends on another row's content. Plugins register probes through the
``cachekit_register_probes`` hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from cachekit.errors import ConfigError
from cachekit.region import Region
from cachekit.registry import Registry


class Probe(Protocol):
    """Measures one tensor per denoiser call from what the region's call computes anyway."""

    def watched_modules(self, region: Region) -> tuple[str, ...]:
        """Modules whose input (read with ``region.io``) must be recorded before the entry runs."""

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The probe tensor of this call, batch rows first."""


@dataclass(frozen=True)
class EntryInputProbe:
    """The region's entry input: what the span is about to compute from."""

    def watched_modules(self, region: Region) -> tuple[str, ...]:
        return ()

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return entry_inputs[0]


@dataclass(frozen=True)
class EntryResidualProbe:
    """Entry input minus the input of ``region.probe_base``: the residual of the blocks before
    the region (First-Block-Cache's signal, when the region starts after the first blocks)."""

    def watched_modules(self, region: Region) -> tuple[str, ...]:
        if region.probe_base is None:
            raise ConfigError(
                f"probe 'entry_residual' needs region {region.name!r} to name a probe_base module; "
                "use probe 'entry_input' or a region from an adapter that sets it"
            )
        return (region.probe_base,)

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        (base,) = watched.values()
        return entry_inputs[0] - base


PROBES: Registry[Probe] = Registry("probe", "probes")
"""Probes by name (``entry_input``, ``entry_residual``, and those plugins register)."""
PROBES.add("entry_input", EntryInputProbe())
PROBES.add("entry_residual", EntryResidualProbe())


def register_probe(name: str, probe: Probe) -> None:
    """Make ``probe`` available to similarity policies as ``probe: <name>``."""
    PROBES.add(name, probe)


def row_drift_terms(probe: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``sum|p - q|`` and ``sum|q|`` of each batch row, in float32: a ``(2, rows)`` tensor on the
    probe's device (a probe without a batch dimension is one row).

    Terms add up over shards of a row: the terms of a row's pieces, summed over the ranks that
    hold them (:class:`~cachekit.engine.ranks.RankGroup`), are the terms of the whole row.
    """
    rows = probe.float().reshape(1, -1) if probe.dim() == 0 or probe.shape[0] == 1 else probe.float().flatten(1)
    before = previous.float().reshape(rows.shape)
    return torch.stack(((rows - before).abs().sum(dim=1), before.abs().sum(dim=1)))


def drift_of(terms: torch.Tensor) -> float | torch.Tensor:
    """The relative L1 drift ``sum|p - q| / sum|q|`` of each row from its :func:`row_drift_terms`
    (one host sync): a float for one row, else a CPU tensor with one value per row."""
    drift = terms[0] / terms[1].clamp_min(torch.finfo(torch.float32).tiny)
    return float(drift[0]) if len(drift) == 1 else drift.cpu()
