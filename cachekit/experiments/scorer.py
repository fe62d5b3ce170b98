"""What a model's sample scorer is: returned by the ``cachekit_sample_scorer`` hook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch


class SampleScorer(Protocol):
    """Scores the samples of one setting; returned by a ``cachekit_sample_scorer`` plugin."""

    metrics: Mapping[str, bool]
    """The names the scorer returns, each mapped to True when higher is better."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """Score ``images`` ``(N, C, H, W)`` in ``[0, 1]``; ``labels`` are the requested classes, if any."""
