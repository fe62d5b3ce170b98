"""A model's identity in a calibration file: its class and a hash of its configuration.

The hash covers what makes two models the same network: a ``config`` mapping when the model
has one (diffusers models do; keys starting with ``_``, such as the folder it was loaded
from, are left out), else the name, shape and dtype of every parameter and buffer. Weights
are not hashed: a calibration holds for the architecture it was measured on, and a
fine-tune of it may still use it (at the user's judgement).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelIdentity:
    """The class name and configuration hash of one model."""

    class_name: str
    config_hash: str

    @classmethod
    def of(cls, model: nn.Module) -> ModelIdentity:
        """The identity of ``model``."""
        config = getattr(model, "config", None)
        if isinstance(config, Mapping):
            described: object = {str(key): config[key] for key in sorted(config) if not str(key).startswith("_")}
        else:
            described = [(name, list(t.shape), str(t.dtype)) for name, t in model.state_dict(keep_vars=True).items()]
        text = json.dumps(described, sort_keys=True, default=str)
        return cls(type(model).__name__, hashlib.sha256(text.encode()).hexdigest()[:16])

    def __str__(self) -> str:
        return f"{self.class_name} (config {self.config_hash})"
