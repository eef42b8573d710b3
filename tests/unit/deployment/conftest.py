"""Fixtures for deployment-plane unit tests: the fraud app and in-memory stand-in models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from mlplat.contracts.v1 import FeatureSpec, ModelCard, Preprocessor


@pytest.fixture()
def fraud_app(platform_config):
    from mlplat.apps import load_app

    return load_app("fraud", platform_config)


def make_card(app, version: str, **over: Any) -> ModelCard:
    fields = dict(
        model=app.name, version=version, team=app.team, owner=app.owner,
        description=app.description, intended_use=app.intended_use,
        limitations=app.limitations, training_dataset_sha256="ab" * 32,
        metrics={"val_auc": 0.9}, feature_spec=app.features,
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    fields.update(over)
    return ModelCard(**fields)


def preprocessor_for(spec: FeatureSpec) -> Preprocessor:
    looked_up = [f for v in spec.feature_views for f in v.features]
    numeric = [n for n in [*looked_up, *spec.request_features] if n != "merchant_category"]
    return Preprocessor.model_validate({
        "numeric": [{"name": n, "mean": 0.0, "std": 1.0} for n in numeric],
        "categorical": [{"name": "merchant_category", "vocabulary": ["grocery", "travel"]}],
    })


@dataclass
class FakeModel:
    """Score = a fixed per-version offset plus a bit of the amount: versions differ visibly."""

    name: str
    version: str
    feature_spec: FeatureSpec
    preprocessor: Preprocessor
    card: ModelCard | None
    metrics: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    fail: bool = False

    def predict_proba(self, rows: list[dict[str, Any]]) -> list[float]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("boom")
        base = 0.2 if self.version == "1" else 0.7
        return [min(1.0, base + (r.get("amount") or 0.0) / 1e6) for r in rows]


class FakeLoader:
    def __init__(self, app, fail_versions: set[str] | None = None) -> None:
        self.app = app
        self.loaded: list[tuple[str, str]] = []
        self.fail_versions = fail_versions or set()
        self.models: dict[str, FakeModel] = {}

    def __call__(self, model: str, version: str) -> FakeModel:
        if version in self.fail_versions:
            raise FileNotFoundError(f"no artifact for {version}")
        self.loaded.append((model, version))
        m = FakeModel(model, version, self.app.features, preprocessor_for(self.app.features),
                      make_card(self.app, version), {"val_auc": 0.9})
        self.models[version] = m
        return m


@pytest.fixture()
def fake_loader(fraud_app) -> FakeLoader:
    return FakeLoader(fraud_app)


@pytest.fixture()
def lookup(fraud_app):
    from mlplat.deployment import InMemoryFeatureLookup

    names = [f for v in fraud_app.features.feature_views for f in v.features]
    rows = tuple({"account_id": i, **{n: float(i) for n in names}} for i in range(50))
    # Account 7 has a stale activity feature: the router must report it missing.
    rows = tuple({**r, "txn_count_1h": None} if r["account_id"] == 7 else r for r in rows)
    return InMemoryFeatureLookup(("account_id",), rows)
