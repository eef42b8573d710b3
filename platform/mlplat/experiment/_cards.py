"""Model cards: canonical JSON and its SHA-256, the card's identity in the registry.

The card is stored in the registry itself (``_card_store``: the version's tags, one
content-addressed revision per edit); its hash is the version's ``card_sha256`` tag. Anyone
holding the version can re-hash the card and compare, so an edited card is detected.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from mlplat.apps import AppConfig
from mlplat.contracts.v1 import FeatureAttribution, FeatureSpec, ModelCard, SliceMetrics


def canonical_card_json(card: ModelCard) -> str:
    """Key-sorted, whitespace-free JSON of ``card``: equal cards give equal bytes.

    Example:
        >>> canonical_card_json(card).startswith('{"created_at":')
        True
    """
    return json.dumps(
        card.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def card_sha256(card: ModelCard) -> str:
    """SHA-256 (hex) of ``canonical_card_json(card)``.

    Example:
        >>> len(card_sha256(card))
        64
    """
    return hashlib.sha256(canonical_card_json(card).encode("utf-8")).hexdigest()


def build_card(
    app: AppConfig,
    *,
    version: str,
    dataset_sha256: str,
    metrics: dict[str, float],
    feature_spec: FeatureSpec,
    created_at: datetime,
    evaluation_dataset_sha256: str = "",
    fairness: list[SliceMetrics] | None = None,
    shap_summary: list[FeatureAttribution] | None = None,
) -> ModelCard:
    """The card for one registered version, its prose taken from the app's app.yaml.

    Example:
        >>> build_card(app, version="3", dataset_sha256="ab" * 32, metrics={"val_auc": 0.9},
        ...            feature_spec=app.features, created_at=datetime.now(UTC)).team
        'risk'
    """
    return ModelCard(
        model=app.name,
        version=version,
        team=app.team,
        owner=app.owner,
        description=app.description,
        intended_use=app.intended_use,
        limitations=app.limitations,
        training_dataset_sha256=dataset_sha256,
        metrics={k: float(v) for k, v in metrics.items()},
        feature_spec=feature_spec,
        created_at=created_at,
        evaluation_dataset_sha256=evaluation_dataset_sha256 or dataset_sha256,
        fairness=list(fairness or []),
        shap_summary=list(shap_summary or []),
    )
