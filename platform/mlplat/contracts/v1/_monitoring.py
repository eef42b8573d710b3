from __future__ import annotations

from datetime import datetime

from pydantic import Field

from mlplat.contracts.v1._base import Contract


class FeatureDrift(Contract):
    score: float = Field(description="The test's drift score (p-value or distance, see method).")
    method: str
    drifted: bool
    psi: float | None = Field(
        default=None, description="Population stability index (numeric features), for reference."
    )


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
    severity: str = Field(
        default="none", description="none / warning / critical, from monitoring.drift_share_*."
    )
    prediction_drift: FeatureDrift | None = Field(
        default=None, description="Drift of the model's scores vs the reference scores."
    )
    evidently_report: str | None = Field(
        default=None, description="Where the full Evidently report (.html and .json) is written."
    )
