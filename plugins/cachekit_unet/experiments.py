"""The UNet's experiment vocabulary: ``branch: k`` in a policies entry caches region ``branch{k}``.

DeepCache names its regions by skip branch; an experiment entry ``{interval: 3, branch: 0}``
is ``{interval: 3, regions: [branch0]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from cachekit.experiments import EntryKey


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("'branch' must be a skip-branch index 0, 1, 2, ...")
    return value


BRANCH = EntryKey(
    type=Annotated[int, BeforeValidator(_whole_number), Field(ge=0)],
    to_config=lambda branch: {"regions": [f"branch{branch}"]},
)
"""The ``branch`` entry key: skip branch ``k`` (0 is the largest region, DeepCache's default)."""
