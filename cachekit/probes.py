"""Similarity probes: the cheap signal a ``similarity`` policy watches for drift."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from cachekit.errors import ConfigError, did_you_mean, listing
from cachekit.region import Region


class Probe(Protocol):
    """Measures one tensor per denoiser call from what the region's call computes anyway."""

    def watched_modules(self, region: Region) -> tuple[str, ...]:
        """Modules whose input (read with ``region.io``) must be recorded before the entry runs."""

    def measure(self, entry_inputs: tuple[torch.Tensor, ...], watched: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The probe tensor of this call."""


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


def relative_l1(output: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|output - reference| / mean|reference|``: 0 is identical; the drift between two probes.

    Computed in float32 on the tensors' device (one host sync), cheap enough for a probe.
    """
    reference = reference.float()
    scale = reference.abs().mean().clamp_min(torch.finfo(torch.float32).tiny)
    return float((output.float() - reference).abs().mean() / scale)


_PROBES: dict[str, Probe] = {"entry_input": EntryInputProbe(), "entry_residual": EntryResidualProbe()}


def register_probe(name: str, probe: Probe) -> None:
    """Make ``probe`` available to similarity policies as ``probe: <name>``."""
    if name in _PROBES and _PROBES[name] is not probe:
        warnings.warn(f"probe {name!r} re-registered", stacklevel=2)
    _PROBES[name] = probe


def probe_names() -> list[str]:
    """Names of the registered probes (plugins' probes included once loaded)."""
    from cachekit.plugin_manager import get_plugin_manager

    get_plugin_manager()
    return sorted(_PROBES)


def get_probe(name: str) -> Probe:
    """The probe registered as ``name``, or a clear error listing the known ones."""
    names = probe_names()
    if name not in names:
        raise ConfigError(f"unknown probe {name!r}{did_you_mean(name, names)}; known: {listing(names)}")
    return _PROBES[name]
