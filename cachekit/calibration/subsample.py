"""A fixed, seeded subsample of a region's result: what calibration keeps of each step.

Every batch row's result (all its floating-point tensors, flattened and joined) is cut to
the same ``size`` positions, drawn once from a seeded generator the first time a region is
seen and kept for every step and generation. What is kept per row and step is ``size``
floats, whatever the size of the model.
"""

from __future__ import annotations

from typing import Any

import torch

from cachekit.errors import CachekitError
from cachekit.reuse.tree import tensors


class Subsample:
    """Picks the same ``size`` positions of every row's flattened result, drawn with ``seed``."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.index: torch.Tensor | None = None
        self.width = 0

    def __call__(self, value: Any) -> torch.Tensor:
        """``value``'s rows cut to the chosen positions: a float32 CPU tensor ``(rows, min(size, width))``."""
        leaves = [leaf for leaf in tensors(value) if leaf.is_floating_point() and leaf.dim()]
        if not leaves:
            raise CachekitError("calibration: a region's result holds no floating-point tensor to measure")
        rows = leaves[0].shape[0]
        flat = torch.cat([leaf.detach().reshape(rows, -1) for leaf in leaves if leaf.shape[0] == rows], dim=1)
        if self.index is None:
            generator = torch.Generator().manual_seed(self.seed)
            self.width = flat.shape[1]
            self.index = torch.randperm(self.width, generator=generator)[: self.size].sort().values
        elif flat.shape[1] != self.width:
            raise CachekitError(
                f"calibration: a region's result changed size ({self.width} values per row, now {flat.shape[1]}); "
                "calibrate on generations of one resolution"
            )
        return flat[:, self.index.to(flat.device)].float().cpu()
