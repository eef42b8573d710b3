from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from mlplat.contracts.v1._base import Contract
from mlplat.contracts.v1._data import FeatureSpec
from mlplat.contracts.v1._model import FeatureAttribution, SliceMetrics


class ModelCard(Contract):
    """What a model is for, what it was trained on and how it scored. Stored with the version."""

    model: str
    version: str
    team: str
    owner: str
    description: str
    intended_use: str
    limitations: str
    training_dataset_sha256: str
    metrics: dict[str, float]
    feature_spec: FeatureSpec
    created_at: datetime
    evaluation_dataset_sha256: str = Field(
        default="", description="SHA-256 of the evaluation rows ('' on cards from before v1.1)."
    )
    fairness: list[SliceMetrics] = Field(
        default_factory=list, description="Metrics per slice of each categorical feature."
    )
    shap_summary: list[FeatureAttribution] = Field(
        default_factory=list, description="Mean |SHAP| per feature, largest first."
    )
    revision: int = Field(default=1, ge=1, description="1 at registration; each edit adds a revision.")
    previous_sha256: str = Field(default="", description="Hash of the revision this one replaces.")


class CostRecord(Contract):
    team: str
    model: str
    kind: Literal["job", "trial", "replica"]
    pool: str
    resource_seconds: float = Field(ge=0, description="CPU-seconds (or GPU-seconds) consumed.")
    cost_usd: float = Field(ge=0)
    source: str = Field(description="Job id, trial id or deployment name it came from.")


class AuditEvent(Contract):
    """One record in the hash-chained audit log."""

    seq: int = Field(ge=1)
    ts: datetime
    actor: str
    action: str
    target: str
    outcome: Literal["ok", "denied", "failed"] = "ok"
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
