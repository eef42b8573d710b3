"""Feast definitions of the fraud app: the ``account`` entity and its two feature views.

app.yaml is the source of truth for which views exist, their features and their TTLs; this file
reads it and adds what app.yaml does not say: value types and where the raw tables live
(``$MLPLAT_FEAST_RAW_DIR``, set by mlplat or printed by ``python -m mlplat.data._env fraud``).

Example:
    >>> views = definitions("/data/raw/fraud")
    >>> sorted(v.name for v in views if isinstance(v, FeatureView))
    ['account_profile', 'account_txn_stats']
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import yaml
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import FeastType, Float64, Int64

from mlplat.contracts.v1 import FeatureSpec, FeatureViewRef

APP_YAML = Path(__file__).resolve().parents[1] / "app.yaml"
RAW_DIR_ENV = "MLPLAT_FEAST_RAW_DIR"
# How long the risk team keeps its raw feature tables (its data-retention policy). Carried as
# the views' `retention_days` tag; `mlplat features check` compares it with the platform minimum.
RETENTION_DAYS = 400

# Value type of every feature the app may declare; app.yaml names them, this types them.
FEATURE_TYPES: dict[str, FeastType] = {
    "account_age_days": Int64,
    "credit_limit": Float64,
    "home_risk_score": Float64,
    "txn_count_1h": Int64,
    "txn_amount_1h": Float64,
    "txn_count_24h": Int64,
    "txn_amount_24h": Float64,
    "txn_count_7d": Int64,
    "avg_amount_7d": Float64,
}


def load_spec(app_yaml: Path = APP_YAML) -> FeatureSpec:
    """The ``features`` block of app.yaml as the FeatureSpec contract."""
    return FeatureSpec.model_validate(yaml.safe_load(app_yaml.read_text())["features"])


def _view(ref: FeatureViewRef, entity: Entity, raw_dir: str, spec: FeatureSpec) -> FeatureView:
    untyped = [f for f in ref.features if f not in FEATURE_TYPES]
    if untyped:
        raise ValueError(
            f"{APP_YAML}: feature view '{ref.name}' lists {untyped} but {__file__} has no value "
            "type for them; add them to FEATURE_TYPES."
        )
    source = FileSource(
        name=f"{ref.name}_source",
        path=f"{raw_dir.rstrip('/')}/{ref.name}.parquet",
        timestamp_field=spec.timestamp_column,
        created_timestamp_column="created_timestamp",
    )
    return FeatureView(
        name=ref.name,
        entities=[entity],
        ttl=timedelta(seconds=ref.ttl_s),
        schema=[Field(name=f, dtype=FEATURE_TYPES[f]) for f in ref.features],
        source=source,
        online=True,
        tags={"retention_days": str(RETENTION_DAYS), "team": "risk"},
    )


def definitions(raw_dir: str, app_yaml: Path = APP_YAML) -> list[Entity | FeatureView]:
    """Build the entity and one feature view per app.yaml view, reading ``<raw_dir>/<view>.parquet``.

    Args:
        raw_dir: Folder (or URI) holding one parquet table per feature view.
        app_yaml: The app manifest to take views, features and TTLs from.

    Returns:
        ``[account, <view>, ...]`` in app.yaml order.

    Example:
        >>> [d.name for d in definitions("/raw/fraud")]
        ['account', 'account_profile', 'account_txn_stats']
    """
    spec = load_spec(app_yaml)
    entity = Entity(
        name="account",
        join_keys=list(spec.entity_keys),
        value_type=ValueType.INT64,
        description="A card account.",
    )
    return [entity, *(_view(ref, entity, raw_dir, spec) for ref in spec.feature_views)]


def _raw_dir_from_env() -> str:
    raw_dir = os.environ.get(RAW_DIR_ENV)
    if not raw_dir:
        raise RuntimeError(
            f"{RAW_DIR_ENV} is not set, so the fraud feature sources have no location. Run "
            '`eval "$(python -m mlplat.data._env fraud)"` first (it sets every variable '
            "feature_store.yaml and this file need)."
        )
    return raw_dir


# `feast apply` collects Feast objects from module globals: bind each definition under its name
# (``account``, ``account_profile``, ``account_txn_stats``), whatever views app.yaml lists.
globals().update({d.name: d for d in definitions(_raw_dir_from_env())})
