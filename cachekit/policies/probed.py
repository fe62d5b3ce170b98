"""The probe a drift-reading policy names, checked against the registered probes when the config is read."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from cachekit.engine.probes import PROBES


def _registered(name: str) -> str:
    PROBES.get(name)
    return name


ProbeName = Annotated[
    str,
    Field(min_length=1, description="Probe name: 'entry_input', 'entry_residual', or one a plugin registers."),
    AfterValidator(_registered),
]
"""A registered probe's name; an unknown one is a config error listing the probes."""
