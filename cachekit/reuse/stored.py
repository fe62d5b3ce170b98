"""``forecast: none``: a reuse step is served the latest stored result as it was computed."""

from __future__ import annotations

from typing import Any

import torch

from cachekit.reuse.forecaster import Forecaster, register_forecaster
from cachekit.reuse.tree import merge_rows, nbytes


class StoredResult(Forecaster):
    """Plain reuse (DeepCache, FORA): one result kept, served unchanged."""

    def __init__(self) -> None:
        self.value: Any = None

    def record(self, step: int, value: Any, rows: torch.Tensor | None = None) -> None:
        self.value = value if rows is None or self.value is None else merge_rows(rows, value, self.value)

    def serve(self, step: int) -> Any:
        return self.value

    def nbytes(self) -> int:
        return nbytes(self.value)


register_forecaster("none", StoredResult)
