from __future__ import annotations

from datetime import datetime

from pydantic import Field

from mlplat.contracts.v1._base import Contract


class FeatureDrift(Contract):
    score: float = Field(description="The test's drift score (p-value or distance, see method).")
    method: str
    drifted: bool


class DriftReport(Contract):
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    reference_rows: int
    current_rows: int
    features: dict[str, FeatureDrift]
    share_drifted: float = Field(ge=0, le=1)
    dataset_drift: bool
