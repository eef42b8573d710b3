from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from mlplat.contracts.v1._base import Contract


class TrafficSplit(Contract):
    """Live traffic weights per model version (percent, summing to 100) and a shadow version.

    The shadow receives a copy of every request off the request path; its answers are recorded
    for comparison and never returned to callers.
    """

    weights: dict[str, float] = Field(min_length=1)
    shadow: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> TrafficSplit:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must be ≥ 0, got {self.weights}")
        total = sum(self.weights.values())
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"weights must sum to 100, got {total} ({self.weights})")
        if self.shadow is not None and self.weights.get(self.shadow, 0) > 0:
            raise ValueError(f"shadow version '{self.shadow}' also receives live traffic")
        return self


class GateResult(Contract):
    """One promotion gate's verdict. ``judged=False``: the gate could not be judged (no served
    data to compare, no reference); it then blocks (``passed=False``) unless an incident
    commander accepts it, which the ``detail`` records."""

    name: str
    passed: bool
    detail: str
    judged: bool = True


class PromotionRequest(Contract):
    model: str
    version: str
    requested_by: str
    reason: str = ""
    requested_at: datetime
