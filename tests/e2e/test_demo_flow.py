"""The walking skeleton `make demo` runs, at small scale, asserting what a user would check."""

from __future__ import annotations

import io
import math
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from mlplat.config import load_config
from mlplat.demo import run_demo

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1200)  # the module fixture runs the whole demo once


@pytest.fixture(scope="module")
def demo(ray_cluster: str, ray_dashboard_url: str, session_home: Path):
    cfg = load_config(REPO / "platform.yaml")
    out = io.StringIO()
    try:
        summary = run_demo(cfg, n_accounts=150, days=6, requests_per_stage=80,
                           dashboard_url=ray_dashboard_url, console=Console(file=out, width=160))
    except BaseException:
        print(out.getvalue())  # what the demo printed up to the failure (pytest shows it)
        raise
    return cfg, summary, out.getvalue()


@pytest.mark.e2e
@pytest.mark.slow
def test_dataset_has_rows_and_no_feature_from_the_future(demo) -> None:
    _, summary, _ = demo
    assert summary.dataset_rows > 500
    table = pq.read_table(Path(summary.dataset_dir) / "data").to_pandas()
    assert len(table) == summary.dataset_rows
    ts_cols = [c for c in table.columns if c.endswith("__event_timestamp")]
    assert ts_cols, "dataset must carry each feature view's event timestamp"
    for col in ts_cols:
        matched = table[col].notna()
        assert matched.any()
        assert (table.loc[matched, col] <= table.loc[matched, "event_timestamp"]).all(), col


@pytest.mark.e2e
@pytest.mark.slow
def test_two_registered_versions_with_cards(demo) -> None:
    from mlplat.experiment import get_model_card

    cfg, summary, _ = demo
    assert len(summary.versions) == 2
    for version in summary.versions:
        card = get_model_card(cfg, "fraud", version)
        assert card.team == "risk" and card.version == version
        assert card.training_dataset_sha256 == summary.dataset_sha256
        assert card.metrics["val_auc"] > 0.6
    assert all(all(g["passed"] for g in gates) for gates in summary.gates.values())


@pytest.mark.e2e
@pytest.mark.slow
def test_predictions_are_valid_and_name_their_version(demo) -> None:
    _, summary, _ = demo
    versions = set(summary.versions)
    assert summary.responses
    for answer in summary.responses:
        assert answer["model"] == "fraud"
        assert answer["version"] in versions
        assert 0.0 <= answer["score"] <= 1.0 and answer["label"] in (0, 1)


@pytest.mark.e2e
@pytest.mark.slow
def test_observed_split_follows_the_weights(demo) -> None:
    _, summary, _ = demo
    stages = {s["stage"]: s for s in summary.stages}
    assert "shadow" in stages and "production" in stages, (
        list(stages), summary.stage_times, summary.batch_times)
    v1, v2 = sorted(summary.versions, key=int)
    # Shadow: callers only ever see the production version.
    assert set(stages["shadow"]["observed"]) == {v1}
    assert set(stages["production"]["observed"]) == {v2}
    for stage in summary.stages:
        n = sum(stage["observed"].values())
        p = stage["weights"].get(v2, 0.0) / 100
        got = stage["observed"].get(v2, 0)
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(got - n * p) <= 4 * sigma + 2, (stage, got, n * p)
    assert summary.shadow.get("comparisons", 0) > 0


@pytest.mark.e2e
@pytest.mark.slow
def test_drift_report_has_per_feature_scores(demo) -> None:
    _, summary, _ = demo
    features = summary.drift["features"]
    assert {"amount", "txn_count_24h", "credit_limit"} <= set(features)
    assert all(isinstance(f["score"], float) for f in features.values())
    assert summary.drift["current_rows"] > 0


@pytest.mark.e2e
@pytest.mark.slow
def test_cost_is_attributed_to_the_team(demo) -> None:
    _, summary, _ = demo
    assert summary.cost["by_team"].get("risk", 0) > 0
    assert summary.cost["per_inference_usd"].get("fraud", 0) >= 0


@pytest.mark.e2e
@pytest.mark.slow
def test_audit_chain_verifies_then_detects_an_edit(demo, tmp_path: Path) -> None:
    from mlplat.audit import AuditLog
    from mlplat.audit._store import SqliteAuditStore

    cfg, summary, _ = demo
    assert summary.audit["ok"] and summary.audit["records"] >= 5
    assert AuditLog(cfg).verify().ok
    # Tamper with a copy: the session's log is shared with every later test.
    db = tmp_path / "audit-copy.db"
    with sqlite3.connect(cfg.local_path(cfg.active_profile().audit.path)) as src, \
            sqlite3.connect(db) as dst:
        src.backup(dst)
    log = AuditLog(cfg, store=SqliteAuditStore(db))
    assert log.verify().ok
    # Someone with write access to the file: the store's triggers refuse UPDATE, so they drop
    # them first and rewrite record 2's body.
    with sqlite3.connect(db) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        body = conn.execute("SELECT body FROM audit_log WHERE seq = 2").fetchone()[0]
        conn.execute("UPDATE audit_log SET body = ? WHERE seq = 2",
                     (body.replace('"outcome":"', '"outcome":"x', 1) if '"outcome":"' in body
                      else body.replace('"actor":"', '"actor":"x', 1),))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_prints_where_to_look(demo) -> None:
    _, _, printed = demo
    for needle in ["Ray dashboard:", "Serve endpoint: POST", "/v1/models/fraud/predict", "mlflow ui",
                   "mlplat demo summary"]:
        assert needle in printed


@pytest.mark.e2e
@pytest.mark.slow
def test_bad_predict_bodies_are_4xx_naming_the_field(demo) -> None:
    import httpx

    _, summary, _ = demo
    good = {"entity": {"account_id": 1}, "features": {"amount": 12.5, "merchant_category": "fuel"}}
    cases = [
        ({"entity": {"account_id": 1}, "features": {"merchant_category": "fuel"}}, "features.amount"),
        ({"entity": {}, "features": good["features"]}, "entity"),
        ({**good, "features": {**good["features"], "amount": "lots"}}, "features.amount"),
        ({**good, "colour": "red"}, "colour"),
    ]
    with httpx.Client(base_url=summary.endpoint, timeout=30) as client:
        for body, field in cases:
            resp = client.post("/predict", json=body)
            assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
            assert field in resp.json()["field"], (body, resp.json())
        resp = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert 400 <= resp.status_code < 500
        # An account the online store has never seen is still answered, with the gap named.
        resp = client.post("/predict", json={**good, "entity": {"account_id": 987654321}})
        assert resp.status_code == 200
        assert "credit_limit" in resp.json()["features_missing"]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_readme_commands_work_after_the_demo(demo) -> None:
    """`mlplat deploy status fraud` and `mlplat rollback fraud` (the README's) act on what the
    demo left behind: the controller manages fraud, and the rollback is audited as the person
    whose token was used. Last in the module: it changes the live split."""
    from typer.testing import CliRunner

    from mlplat.apps import load_app
    from mlplat.audit import AuditLog
    from mlplat.cli import app as cli
    from mlplat.deployment import current_split
    from mlplat.secrets import person_token

    cfg, summary, _ = demo
    v1, v2 = sorted(summary.versions, key=int)
    # The demo promoted through the controller: all six gates, audited as carol.
    gates = {g["name"] for g in summary.gates[v2]}
    assert {"metric", "schema", "model_card", "contract", "features", "drift"} <= gates
    runner = CliRunner()
    status = runner.invoke(cli, ["deploy", "status", "fraud"], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    # (A drift-triggered retrain may have promoted a v3 since: rejected or not, the status
    # names the last good version, and the rollback undoes the last completed promotion.)
    assert f"last good version {v2}" in status.output, status.output
    refused = runner.invoke(cli, ["rollback", "fraud", "--reason", "no token"], env={
        "MLPLAT_TOKEN": ""})
    assert refused.exit_code == 2 and "token" in refused.output
    before = AuditLog(cfg).head()[0]
    back = runner.invoke(cli, ["rollback", "fraud", "--reason", "e2e: undo the demo promotion"],
                         env={"MLPLAT_TOKEN": person_token(cfg, "alice")},
                         catch_exceptions=False)
    assert back.exit_code == 0, back.output
    assert "status rolled_back" in back.output
    assert current_split(cfg, load_app("fraud", cfg)).weights.get(v1) == 100.0
    rolled = [e for e in AuditLog(cfg).events(before) if e.action == "deployment.rollback"]
    assert [e.actor for e in rolled] == ["alice"]

