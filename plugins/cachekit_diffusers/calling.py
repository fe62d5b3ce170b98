"""diffusers' call convention, for the experiment runner: how a pipeline is asked for samples.

``pipe(num_inference_steps=..., generator=[one per sample], output_type="pt", **call)`` plus
``prompt=[...]``, ``class_labels=[...]`` or ``batch_size=n``; the samples are ``output.images``
(or the first item of a tuple). Most pipelines follow it, so the plugin's
``cachekit_experiment_caller`` answers, last, for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cachekit import ExperimentError, ModelSpec, hookimpl
from cachekit.experiments import SampleRequest


@dataclass(frozen=True)
class DiffusersCaller:
    """Calls a pipeline the diffusers way and returns its images as a float CPU tensor."""

    reserved: frozenset[str] = frozenset(
        {"num_inference_steps", "generator", "output_type", "prompt", "class_labels", "batch_size"}
    )
    """The call arguments it sets."""

    def __call__(self, pipeline: Any, request: SampleRequest) -> torch.Tensor:
        """One pipeline call for ``request``, with the pipeline's own progress bar turned off."""
        configure = getattr(pipeline, "set_progress_bar_config", None)
        if callable(configure):
            configure(disable=True)
        return pipeline_images(pipeline(**self.arguments(request)))

    def arguments(self, request: SampleRequest) -> dict[str, Any]:
        """The keyword arguments of the pipeline call for ``request``."""
        kwargs: dict[str, Any] = {
            **request.options,
            "num_inference_steps": request.steps,
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds],
            "output_type": "pt",
        }
        if request.prompts is not None:
            kwargs["prompt"] = list(request.prompts)
        elif request.class_labels is not None:
            kwargs["class_labels"] = list(request.class_labels)
        else:
            kwargs["batch_size"] = len(request.seeds)
        return kwargs


def pipeline_images(output: Any) -> torch.Tensor:
    """The images of a pipeline output as a float CPU tensor ``(N, C, H, W)`` (or the pipeline's own shape)."""
    images = getattr(output, "images", None)
    if images is None and isinstance(output, tuple) and output:
        images = output[0]
    if images is None:
        raise ExperimentError(f"the pipeline returned {type(output).__name__} with no 'images'; cannot compare outputs")
    if not isinstance(images, torch.Tensor):
        array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
        images = torch.from_numpy(array).movedim(-1, 1) if array.ndim == 4 else torch.from_numpy(array)
    return images.detach().float().cpu()


@hookimpl(trylast=True)
def cachekit_experiment_caller(spec: ModelSpec) -> DiffusersCaller:
    """diffusers' convention, for every model no other plugin calls its own way."""
    return DiffusersCaller()
