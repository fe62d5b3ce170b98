"""cachekit plugin shipping small trained digits models, their loaders and their scorer.

Ships, trained on scikit-learn's bundled digits (16x16) by ``scripts/train_digits.py``:
``digits-unet`` (an unconditional DDPM ``UNet2DModel`` sampled with DDIM), ``digits-dit``
(a class-conditional ``DiTTransformer2DModel``) and a digit classifier used for the
Fréchet distance and class accuracy of samples. Also builds tiny random pipelines
(``tiny-unet``, ``tiny-dit``). Other folders and hub ids are the diffusers plugin's. Importing
this plugin does not import diffusers.
"""

from __future__ import annotations

from typing import Any

from cachekit import ModelSpec, hookimpl
from cachekit_digits.loading import BUILDERS, DIGITS_MODELS, SHIPPED, load_pipeline
from cachekit_digits.quality import DigitsScorer


@hookimpl(trylast=True)
def cachekit_load_experiment_model(spec: ModelSpec) -> Any | None:
    """Load a shipped digits model or build a tiny one; ``None`` for other models.

    The diffusers plugin's catch-all ``from_pretrained`` leaves the names listed by
    ``cachekit_experiment_models`` to their plugin, so the order of the two never matters.
    """
    return load_pipeline(spec)


@hookimpl(trylast=True)
def cachekit_experiment_models() -> list[ModelSpec]:
    """The shipped digits models and the tiny builders."""
    return [*(ModelSpec(source=name) for name in SHIPPED), *(ModelSpec(builder=name) for name in BUILDERS)]


@hookimpl(trylast=True)
def cachekit_sample_scorer(spec: ModelSpec) -> DigitsScorer | None:
    """The digits scorer (FD, class accuracy) for the digits models; ``None`` for others."""
    return DigitsScorer() if (spec.source or spec.builder) in DIGITS_MODELS else None
