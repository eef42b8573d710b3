from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict, Field

from mlplat.contracts.v1._base import Contract


class ModelVersionRef(Contract):
    name: str
    version: str


class NumericColumn(Contract):
    name: str
    mean: float
    std: float = Field(gt=0)


class CategoricalColumn(Contract):
    name: str
    vocabulary: list[str] = Field(min_length=1, description="Unknown values map to all zeros.")


class Preprocessor(Contract):
    """Turns feature records into the model's float matrix; fitted by training, used by serving.

    Shipped with every model version so a server needs no tenant code to encode a request.
    Missing numeric values (a feature outside its TTL) become the training mean.
    """

    numeric: list[NumericColumn]
    categorical: list[CategoricalColumn] = Field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c.vocabulary) for c in self.categorical)

    def transform_rows(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        out: list[list[float]] = []
        for row in rows:
            vec: list[float] = []
            for col in self.numeric:
                value = row.get(col.name)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    vec.append(0.0)
                else:
                    vec.append((float(value) - col.mean) / col.std)
            for cat in self.categorical:
                value = row.get(cat.name)
                vec.extend(1.0 if value == v else 0.0 for v in cat.vocabulary)
            out.append(vec)
        return out


class PredictRequest(Contract):
    """Body of ``POST /v1/models/<model>/predict``.

    ``entity`` holds the entity keys (looked up in the online store); ``features`` holds the
    request-time features. ``request_id`` (optional) keys the stable traffic split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    entity: dict[str, int | str] = Field(min_length=1)
    features: dict[str, float | int | str | None] = Field(default_factory=dict)
    request_id: str | None = None


class PredictResponse(Contract):
    model: str
    version: str
    score: float = Field(ge=0, le=1)
    label: int
    request_id: str
    features_missing: list[str] = Field(default_factory=list)


class SliceMetrics(Contract):
    """Evaluation metrics on one slice of the evaluation set (rows where ``feature == value``).

    Part of a ``ModelCard``'s fairness section: a model that is good on average but poor for
    one country or merchant category shows it here.
    """

    feature: str
    value: str
    rows: int = Field(ge=0)
    positives: int = Field(ge=0)
    auc: float | None = Field(None, description="None when the slice holds a single class.")
    fpr: float | None = Field(None, description="False-positive rate at threshold 0.5.")
    tpr: float | None = Field(None, description="True-positive rate (recall) at threshold 0.5.")


class FeatureAttribution(Contract):
    """Mean |SHAP value| of one model input feature (one-hot columns summed per feature)."""

    feature: str
    mean_abs_shap: float = Field(ge=0)
