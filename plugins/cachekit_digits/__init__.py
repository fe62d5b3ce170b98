"""cachekit plugin shipping small trained digits models, and loading experiment models.

Ships, trained on scikit-learn's bundled digits (16x16) by ``scripts/train_digits.py``:
``digits-unet`` (an unconditional DDPM ``UNet2DModel`` sampled with DDIM), ``digits-dit``
(a class-conditional ``DiTTransformer2DModel``) and a digit classifier used for the
Fréchet distance and class accuracy of samples. Also loads any local folder or hub id with
diffusers' ``from_pretrained`` and builds tiny random pipelines (``tiny-unet``,
``tiny-dit``). Importing this plugin does not import diffusers.
"""

from __future__ import annotations

from typing import Any

from cachekit import hookimpl
from cachekit.experiment_config import ModelSpec
from cachekit_digits.loading import DIGITS_MODELS, load_pipeline
from cachekit_digits.quality import DigitsScorer


@hookimpl(trylast=True)
def cachekit_load_experiment_model(spec: ModelSpec) -> Any | None:
    """Load a shipped digits model, a tiny builder's model, a local folder or a hub id."""
    return load_pipeline(spec)


@hookimpl(trylast=True)
def cachekit_sample_scorer(spec: ModelSpec) -> DigitsScorer | None:
    """The digits scorer (FD, class accuracy) for the digits models; ``None`` for others."""
    return DigitsScorer() if (spec.source or spec.builder) in DIGITS_MODELS else None
