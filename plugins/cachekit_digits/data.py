"""scikit-learn's bundled handwritten digits as 16x16 images in [-1, 1].

The 1797 8x8 images (grey levels 0..16) are upsampled bilinearly to 16x16. The split into
training and test images is fixed (every fifth image, in the bundled order, is a test
image), so the classifier's test accuracy and the reference statistics of the Fréchet
distance are reproducible on any machine.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

IMAGE_SIZE = 16
"""Side of the square images the shipped models generate and classify."""

NUM_CLASSES = 10
"""Digits 0 to 9."""

TEST_EVERY = 5
"""Every ``TEST_EVERY``-th image of the bundled set is held out for testing."""


def load_digits(split: Literal["train", "test", "all"] = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 16, 16)`` in ``[-1, 1]`` and their labels ``(N,)`` of one split."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError("the digits come bundled with scikit-learn: pip install 'cachekit[demo]'") from None

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = images.clamp(0.0, 1.0) * 2.0 - 1.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    test = torch.arange(len(labels)) % TEST_EVERY == TEST_EVERY - 1
    if split == "all":
        return images, labels
    keep = test if split == "test" else ~test
    return images[keep], labels[keep]
