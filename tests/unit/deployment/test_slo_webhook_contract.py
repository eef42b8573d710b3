"""SLO windows, webhook signatures (MLflow's own signer), the serving-contract gate, faults."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import (
    RouterCore,
    SloWindows,
    SplitPicker,
    contract_gate,
    load_contract,
    verify_mlflow_webhook,
)
from mlplat.deployment._slo import LATENCY_BUCKETS_MS, VersionCounters, breach, p99_of
from mlplat.deployment._webhook import WebhookError


def test_windows_sum_replicas_and_difference_snapshots() -> None:
    w = SloWindows(history_s=60)
    a, b = VersionCounters(), VersionCounters()
    for _ in range(10):
        a.observe(3.0, ok=True)
    w.report("app", "a", {"2": a.snapshot()}, now=100.0)
    for _ in range(4):
        a.observe(3.0, ok=False)
        b.observe(400.0, ok=True)
    w.report("app", "a", {"2": a.snapshot()}, now=102.0)
    w.report("app", "b", {"2": b.snapshot()}, now=102.0)
    stats = w.window("app", "2", start=101.0, now=102.0)
    assert (stats.requests, stats.errors) == (8, 4)  # the first 10 are before the window
    assert stats.p99_ms == 400 or stats.p99_ms == 500
    assert breach(stats, 0.02, 250) is not None
    assert w.window("app", "9", start=0, now=102.0).requests == 0


def test_p99_needs_enough_samples_to_breach() -> None:
    c = VersionCounters()
    for _ in range(5):
        c.observe(1000.0, ok=True)
    w = SloWindows(60)
    w.report("x", "r", {"1": c.snapshot()}, now=1.0)
    assert breach(w.window("x", "1", 0, 1.0), 0.02, 250) is None
    assert p99_of([0] * len(LATENCY_BUCKETS_MS)) is None


def test_mlflow_signature_is_verified_with_mlflows_own_signer() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": "fraud", "alias": "staging", "version": "3"}})
    headers = {"X-MLflow-Delivery-Id": "abc", "X-MLflow-Timestamp": "1000",
               "X-MLflow-Signature": _generate_hmac_signature("s3cret", "abc", "1000", body)}
    assert verify_mlflow_webhook("s3cret", headers, body.encode(), now=1001)["data"]["version"] == "3"
    with pytest.raises(WebhookError, match="does not match") as bad:
        verify_mlflow_webhook("other", headers, body.encode(), now=1001)
    assert bad.value.status == 401
    with pytest.raises(WebhookError, match="replay"):
        verify_mlflow_webhook("s3cret", headers, body.encode(), now=5000)
    with pytest.raises(WebhookError, match="unsigned"):
        verify_mlflow_webhook("s3cret", {}, body.encode(), now=1001)
    tampered = body.replace('"3"', '"4"').encode()
    with pytest.raises(WebhookError, match="does not match"):
        verify_mlflow_webhook("s3cret", headers, tampered, now=1001)


def test_contract_gate_compares_input_and_output(fraud_app, fake_loader) -> None:
    contract = load_contract(fraud_app)
    assert contract.input.request_features == {"amount": "number", "merchant_category": "string"}
    good = fake_loader("fraud", "2")
    assert contract_gate(fraud_app, good).passed
    spec = good.feature_spec.model_copy(update={"request_features": ["amount"]})
    bad = fake_loader("fraud", "3")
    bad.feature_spec = spec
    result = contract_gate(fraud_app, bad)
    assert not result.passed and "merchant_category" in result.detail
    broken = fake_loader("fraud", "4")
    broken.fail = True
    assert "output probe failed" in contract_gate(fraud_app, broken).detail


def test_failing_canary_falls_back_to_the_stable_version(fraud_app, fake_loader, lookup) -> None:
    core = RouterCore(fraud_app.name, fraud_app.features, 0.5, fake_loader, lookup)
    core.apply({"model": "fraud", "split": {"weights": {"1": 50, "2": 50}}, "stable": "1",
                "faults": {"2": {"error_rate": 1.0}}})
    seen = set()
    for i in range(200):
        body = json.dumps({"entity": {"account_id": 1}, "request_id": f"r{i}",
                           "features": {"amount": 1.0, "merchant_category": "travel"}})
        status, out, _ = core.respond(body)
        assert status == 200  # never a failed request
        seen.add(out["version"])
    assert seen == {"1"}
    stats = core.stats()
    assert stats["slo"]["2"]["errors"] == stats["slo"]["2"]["requests"] > 50
    assert stats["fallbacks"]["2"] == stats["slo"]["2"]["errors"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=100), min_size=2, max_size=4))
def test_split_shares_stay_within_binomial_bounds(raw: list[int]) -> None:
    if sum(raw) == 0:
        raw[0] = 1
    total = sum(raw)
    weights = {str(i + 1): 100.0 * w / total for i, w in enumerate(raw)}
    weights[str(len(raw))] += 100.0 - sum(weights.values())
    weights = {k: max(0.0, v) for k, v in weights.items()}
    picker = SplitPicker(TrafficSplit(weights=weights))
    n = 4000
    counts: dict[str, int] = {}
    for i in range(n):
        v = picker.choose(f"key-{i}")
        counts[v] = counts.get(v, 0) + 1
    for version, pct in weights.items():
        p = pct / 100.0
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(counts.get(version, 0) - n * p) <= 5 * sd + 2, (weights, counts)
        if pct == 0:
            assert counts.get(version, 0) == 0
