"""A config's ``forecast``: a forecaster's name, and the parameters it declares.

``forecast: linear`` names a forecaster; ``forecast: {name: taylor, order: 2}`` also gives
its parameters, validated against the forecaster's :attr:`~cachekit.reuse.forecaster.Forecaster.Options`:
an unknown parameter or a value out of bounds is a clear error naming what is allowed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from cachekit.errors import did_you_mean, listing
from cachekit.reuse.forecaster import FORECASTERS, Forecaster, ForecasterOptions


class ForecastSpec(BaseModel):
    """Which forecaster serves reuse steps, with its parameters (written as a name alone when it has none)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field("none", description="A registered forecaster: 'none', 'linear', 'taylor', 'hermite', ...")
    options: ForecasterOptions = Field(default_factory=ForecasterOptions, description="Its declared parameters.")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, ForecastSpec):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise ValueError("give a forecaster name or a mapping {name: NAME, PARAMETER: VALUE}")
        given = dict(value)
        if "name" not in given:
            raise ValueError(f"a forecast mapping needs 'name' (a forecaster's), got keys {listing(given)}")
        name = given.pop("name")
        options_model = FORECASTERS.get(name).Options
        return {"name": name, "options": _options(name, options_model, given)}

    @model_serializer
    def _written(self) -> str | dict[str, Any]:
        given = self.options.model_dump(exclude_unset=True)
        return {"name": self.name, **given} if given else self.name

    @property
    def label(self) -> str:
        """How results tables and setting names show it: ``none``, ``linear``, ``taylor2``, ..."""
        return self.options.label(self.name)

    def factory(self) -> Callable[[], Forecaster]:
        """Makes a fresh forecaster with these parameters (one per stored result)."""
        cls = FORECASTERS.get(self.name)
        return functools.partial(cls, **dict(self.options))


def _options(name: str, model: type[ForecasterOptions], given: dict[str, Any]) -> ForecasterOptions:
    """``given`` validated as the parameters of forecaster ``name``, or a ValueError naming the allowed ones."""
    allowed = list(model.model_fields)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        takes = f"its parameters: {listing(allowed)}" if allowed else "it takes no parameters"
        raise ValueError(
            f"forecaster {name!r} has no parameter {unknown[0]!r}{did_you_mean(unknown[0], allowed)}; {takes}"
        )
    try:
        return model.model_validate(given)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')} (got {e['input']!r})"
            for e in error.errors()
        )
        raise ValueError(f"forecaster {name!r}: {problems}") from None
