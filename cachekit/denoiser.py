"""What a plugin reports when it finds a denoiser in a pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Denoiser:
    """One denoiser of a pipeline and the scheduler that drives it.

    Attributes:
        name: the pipeline attribute it lives in (``"unet"``, ``"transformer_2"``), or
            ``"model"`` for a bare module.
        module: the network called once per step and context.
        scheduler: the pipeline's scheduler, whose calls count the steps; ``None`` for a
            bare model, whose calls are then counted instead.
    """

    name: str
    module: nn.Module
    scheduler: Any = None
