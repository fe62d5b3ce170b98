"""Sample quality on digits: a Fréchet distance in the shipped classifier's feature space, and class accuracy.

The Fréchet distance (FD) is FID's formula with the digit classifier's 64 penultimate
features in place of Inception's: ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``
between the Gaussian fits of generated and real features. The real statistics come from
all 1797 bundled digits. FD is biased upwards at small sample counts, so compare FDs of
equal sample counts only.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from cachekit_digits.classifier import DigitClassifier
from cachekit_digits.data import IMAGE_SIZE, load_digits
from cachekit_digits.models import WEIGHTS_DIR


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def frechet_distance(fit_a: tuple[torch.Tensor, torch.Tensor], fit_b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Fréchet distance between two Gaussians ``(mean, covariance)``.

    ``Tr((S_a S_b)^(1/2))`` is computed as the trace of the square root of the symmetric
    ``S_a^(1/2) S_b S_a^(1/2)``, which has the same eigenvalues and is stable.
    """
    (mean_a, cov_a), (mean_b, cov_b) = fit_a, fit_b
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(distance.clamp_min(0))


@lru_cache(maxsize=1)
def shipped_classifier() -> DigitClassifier:
    """The shipped digit classifier, in eval mode (loaded once)."""
    return DigitClassifier.from_pretrained(WEIGHTS_DIR / "classifier")


@lru_cache(maxsize=1)
def real_statistics() -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian fit of the classifier features of all bundled digits."""
    images, _ = load_digits("all")
    with torch.no_grad():
        return gaussian_fit(shipped_classifier().features(images))


class DigitsScorer:
    """Scores 16x16 greyscale samples in ``[0, 1]``: ``fd`` against the real digits, and
    ``class_accuracy`` (the classifier agrees with the requested label) when labels are given."""

    metrics = {"fd": False, "class_accuracy": True}

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """FD of ``images`` and, with ``labels``, the share classified as their label."""
        expected = (1, IMAGE_SIZE, IMAGE_SIZE)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"digits scorer needs images (N, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        classifier = shipped_classifier()
        with torch.no_grad():
            features = classifier.features(images.float() * 2 - 1)
            scores = {"fd": frechet_distance(gaussian_fit(features), real_statistics())}
            if labels is not None:
                predicted = classifier.head(features).argmax(1)
                scores["class_accuracy"] = float((predicted == labels).float().mean())
        return scores
