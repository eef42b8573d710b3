"""Promotion gates: metric floor, schema = serving contract, model card."""

from __future__ import annotations

from types import SimpleNamespace

from mlplat.contracts.v1 import FeatureSpec, FeatureViewRef
from mlplat.deployment import evaluate_gates, gates_passed, schema_differences
from tests.unit.deployment.conftest import make_card


def candidate(app, version="4", metrics=None, spec=None, card="default"):
    return SimpleNamespace(
        name=app.name, version=version,
        metrics={"val_auc": 0.91} if metrics is None else metrics,
        feature_spec=app.features if spec is None else spec,
        card=make_card(app, version) if card == "default" else card,
    )


def by_name(results):
    return {r.name: r for r in results}


def test_good_candidate_passes_every_gate(platform_config, fraud_app) -> None:
    results = evaluate_gates(platform_config, fraud_app, candidate(fraud_app))
    assert [r.name for r in results] == ["metric", "schema", "model_card"]
    assert gates_passed(results)
    assert "val_auc = 0.91 ≥ 0.7" in by_name(results)["metric"].detail


def test_metric_below_floor_or_absent_fails(platform_config, fraud_app) -> None:
    low = by_name(evaluate_gates(platform_config, fraud_app,
                                 candidate(fraud_app, metrics={"val_auc": 0.65})))
    assert not low["metric"].passed and "0.65 < 0.7" in low["metric"].detail
    none = by_name(evaluate_gates(platform_config, fraud_app,
                                  candidate(fraud_app, metrics={"val_loss": 0.3})))
    assert not none["metric"].passed and "no 'val_auc' metric" in none["metric"].detail


def test_schema_gate_names_the_differences(platform_config, fraud_app) -> None:
    spec = fraud_app.features
    changed = FeatureSpec(
        entity_keys=spec.entity_keys,
        label=spec.label,
        request_features=["amount", "channel"],
        feature_views=[spec.feature_views[0],
                       FeatureViewRef(name="account_txn_stats",
                                      features=["txn_count_1h", "txn_amount_1h"], ttl_s=60)],
    )
    result = by_name(evaluate_gates(platform_config, fraud_app,
                                    candidate(fraud_app, spec=changed)))["schema"]
    assert not result.passed
    assert "account_txn_stats:txn_count_24h" in result.detail
    assert "merchant_category" in result.detail and "channel" in result.detail
    assert schema_differences(spec, spec) == []


def test_model_card_gate(platform_config, fraud_app) -> None:
    missing = by_name(evaluate_gates(platform_config, fraud_app,
                                     candidate(fraud_app, card=None)))["model_card"]
    assert not missing.passed and "no model card" in missing.detail
    wrong = by_name(evaluate_gates(
        platform_config, fraud_app,
        candidate(fraud_app, card=make_card(fraud_app, "3", team="search"))))["model_card"]
    assert not wrong.passed
    assert "card.version is '3', expected '4'" in wrong.detail and "'search'" in wrong.detail


def test_drift_gate_when_measured(platform_config, fraud_app) -> None:
    limit = platform_config.promotion.max_reference_drift
    ok = evaluate_gates(platform_config, fraud_app, candidate(fraud_app), drift_share=limit)
    bad = evaluate_gates(platform_config, fraud_app, candidate(fraud_app),
                         drift_share=limit + 0.1)
    assert gates_passed(ok) and not gates_passed(bad)
    assert by_name(bad)["drift"].detail.endswith("(platform.yaml promotion.max_reference_drift)")
    assert not gates_passed([])
