"""The error of the experiments layer."""

from __future__ import annotations

from cachekit.errors import CachekitError


class ExperimentError(CachekitError, RuntimeError):
    """An experiment cannot run: no plugin loads its model, or the pipeline returned no images."""
