"""Where the shipped digits models live and how they load (diffusers' ``from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""Folder of the shipped models: ``unet/``, ``dit/`` (diffusers pipelines), ``classifier/``."""
