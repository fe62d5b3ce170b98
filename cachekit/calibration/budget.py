"""What a calibration optimises: a refresh budget or an error budget, total or worst-case error."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Budget(BaseModel):
    """Give exactly one of ``refreshes`` (least error for that many refreshes) and ``error``
    (fewest refreshes whose error stays within it); ``objective`` says which error counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refreshes: int | None = Field(
        None, strict=True, ge=1, description="Refreshes per generation (step 0 included): minimise the error."
    )
    error: float | None = Field(
        None, gt=0.0, description="Error allowed (relative L1, see objective): minimise the refreshes."
    )
    objective: Literal["total", "worst"] = Field(
        "total", description="'total': the sum over reuse steps of their error; 'worst': the largest one."
    )

    @model_validator(mode="after")
    def _one_budget(self) -> Budget:
        if (self.refreshes is None) == (self.error is None):
            raise ValueError("give exactly one of 'refreshes' (a refresh budget) and 'error' (an error budget)")
        return self

    def __str__(self) -> str:
        if self.refreshes is not None:
            return f"{self.refreshes} refreshes, least {self.objective} error"
        return f"{self.objective} error at most {self.error:g}, fewest refreshes"
