"""Model card hashing and the tracking URI (no Ray, no store)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlplat.apps import load_app
from mlplat.contracts.v1 import ModelCard
from mlplat.experiment import (
    artifact_root,
    build_card,
    canonical_card_json,
    card_sha256,
    tracking_uri,
)


@pytest.fixture()
def card(platform_config) -> ModelCard:
    app = load_app("fraud", platform_config)
    return build_card(
        app,
        version="3",
        dataset_sha256="ab" * 32,
        metrics={"val_auc": 0.91, "val_loss": 0.3},
        feature_spec=app.features,
        created_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )


def test_card_carries_app_prose(card: ModelCard) -> None:
    assert (card.model, card.version, card.team) == ("fraud", "3", "risk")
    assert "synthetic" in card.limitations


def test_card_hash_is_stable_and_content_sensitive(card: ModelCard) -> None:
    again = ModelCard.model_validate_json(canonical_card_json(card))
    assert card_sha256(again) == card_sha256(card)  # survives a JSON round trip
    reordered = ModelCard.model_validate(dict(reversed(list(card.model_dump().items()))))
    assert card_sha256(reordered) == card_sha256(card)  # field order does not matter
    changed = card.model_copy(update={"metrics": {"val_auc": 0.92, "val_loss": 0.3}})
    assert card_sha256(changed) != card_sha256(card)
    assert len(card_sha256(card)) == 64


def test_canonical_json_is_compact_and_sorted(card: ModelCard) -> None:
    text = canonical_card_json(card)
    assert text.startswith('{"created_at":"2025-01-02T03:04:05.678901Z"') and ": " not in text


def test_sqlite_tracking_uri_is_absolute_under_root(platform_config, tmp_path) -> None:
    uri = tracking_uri(platform_config)
    assert uri == f"sqlite:///{tmp_path}/mlplat-home/mlflow/mlflow.db"
    assert artifact_root(platform_config) == f"file://{tmp_path}/mlplat-home/mlflow/artifacts"


def test_server_tracking_uri(platform_config, monkeypatch) -> None:
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    monkeypatch.delenv("MLPLAT_HOME")
    assert tracking_uri(platform_config) == "http://mlflow.mlplat.svc:5000"
    assert artifact_root(platform_config) == "s3://mlplat-prod-artifacts/mlflow/artifacts"
