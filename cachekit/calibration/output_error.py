"""How far a cached run's output lands from the uncached one: what the schedule search lowers.

The outputs are whatever the calibration's ``generate`` returns: tensors or NumPy arrays, or
lists, tuples and dicts of them (a pipeline's output object is a dict). The error is the
relative squared error ``sum (cached - uncached)^2 / sum uncached^2`` over every
floating-point value, so ``-10 log10`` of it is a PSNR-like figure relative to the output's
own power.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cachekit.errors import CachekitError

NONDETERMINISM = 1e-10
"""Relative error above which two uncached runs of ``generate`` count as different."""


def output_values(outputs: Any) -> list[torch.Tensor]:
    """Every floating-point tensor or array in ``outputs``, as float64 CPU tensors, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs.detach().to("cpu", torch.float64)] if outputs.is_floating_point() else []
    if isinstance(outputs, np.ndarray):
        return [torch.from_numpy(outputs.astype(np.float64))] if np.issubdtype(outputs.dtype, np.floating) else []
    if isinstance(outputs, Mapping):
        return [value for item in outputs.values() for value in output_values(item)]
    if isinstance(outputs, list | tuple):
        return [value for item in outputs for value in output_values(item)]
    return []


class OutputError:
    """The relative squared error of outputs against a reference run's (see the module docs)."""

    def __init__(self, reference: Any):
        self.reference = output_values(reference)
        if not self.reference:
            raise CachekitError(
                "a schedule search compares outputs, and generate() returned no floating-point tensor or array "
                f"(it returned {type(reference).__name__}); return the generated samples (for a diffusers "
                "pipeline, call it with output_type='pt' or 'np' and return the result)"
            )
        self.power = sum(float(value.square().sum()) for value in self.reference) or 1.0

    def __call__(self, outputs: Any) -> float:
        """The relative squared error of ``outputs``, shaped as the reference."""
        values = output_values(outputs)
        shapes = [tuple(value.shape) for value in values]
        expected = [tuple(value.shape) for value in self.reference]
        if shapes != expected:
            raise CachekitError(
                f"generate() returned outputs of shapes {shapes} in one run and {expected} in the uncached one; "
                "a schedule search needs the same samples every run"
            )
        return sum(float((a - b).square().sum()) for a, b in zip(values, self.reference, strict=True)) / self.power

    def check_deterministic(self, outputs: Any) -> None:
        """Raise when ``outputs`` of a second uncached run differ from the reference."""
        error = self(outputs)
        if error > NONDETERMINISM:
            raise CachekitError(
                f"generate() returned different outputs on two uncached runs (relative error {error:.3g}); a "
                "schedule search compares runs, so seed every generator generate() samples from"
            )
