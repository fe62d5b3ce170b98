"""How the runner asks a pipeline for samples: a :class:`SampleRequest` and a :class:`PipelineCaller`.

The runner knows seeds, steps, prompts and class labels; a plugin's caller
(``cachekit_experiment_caller``) turns them into one kind of pipeline's call arguments and
reads the images out of its output. The diffusers plugin's caller, diffusers' convention,
answers for every model no other plugin claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class SampleRequest:
    """One pipeline call: a batch of samples, each with its seed and its prompt or class label."""

    steps: int
    """Denoising steps."""
    seeds: Sequence[int]
    """One seed per sample of the batch."""
    prompts: Sequence[str] | None = None
    """One prompt per sample, for text-conditioned models."""
    class_labels: Sequence[int] | None = None
    """One class label per sample, for class-conditioned models."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Other call arguments, as given in the config's ``sampling.call``."""


class PipelineCaller(Protocol):
    """Calls one kind of pipeline for the runner; returned by a ``cachekit_experiment_caller`` plugin."""

    reserved: frozenset[str]
    """Call arguments the caller sets itself; a config's ``sampling.call`` may not set them."""

    def __call__(self, pipeline: Any, request: SampleRequest) -> torch.Tensor:
        """Sample ``request`` with ``pipeline``: a float CPU tensor, images ``(N, C, H, W)`` in ``[0, 1]``
        (or the pipeline's own shape for other outputs), one sample per seed, in order.

        Turn off the pipeline's own progress bar: the runner shows one for the whole run.
        """
