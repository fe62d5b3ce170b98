"""The shipped digit classifier: a small CNN whose penultimate features feed the Fréchet distance."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cachekit_digits.data import NUM_CLASSES

FEATURE_DIM = 64
"""Width of the feature vector used for the Fréchet distance."""


class DigitClassifier(nn.Module):
    """Two conv stages and a two-layer head on 16x16 images in ``[-1, 1]``."""

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim, "num_classes": num_classes}
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(2 * width * 16, feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(N, feature_dim)``."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.features(images))

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> DigitClassifier:
        """Load a classifier written by :meth:`save_pretrained`, in eval mode."""
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()
