"""Logging, registering and loading a version against a real embedded MLflow store (no Ray)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlplat.apps import AppConfig, load_app
from mlplat.config import load_config
from mlplat.contracts.v1 import Preprocessor
from mlplat.errors import NotFoundError, UserError
from mlplat.experiment import (
    ADMISSION_PATH,
    CardIntegrityError,
    RegisteredVersion,
    VersionInUseError,
    card_revisions,
    card_sha256,
    delete_model_card,
    delete_model_version,
    edit_model_card,
    get_alias,
    get_model_card,
    governance_webhook_app,
    list_versions,
    load_model_version,
    log_training_run,
    set_alias,
)
from mlplat.training import load_model_builder

REPO = Path(__file__).resolve().parents[3]
SHA = "cd" * 32


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """One store per module: MLflow's first-use migrations on SQLite take seconds."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPLAT_HOME", str(tmp_path_factory.mktemp("mlplat-home")))
    mp.delenv("MLPLAT_PROFILE", raising=False)
    cfg = load_config(REPO / "platform.yaml")
    yield cfg, load_app("fraud", cfg)
    mp.undo()


def _model_dir(app: AppConfig, folder: Path) -> Path:
    folder.mkdir(parents=True)
    pre = Preprocessor.model_validate(
        {
            "numeric": [{"name": "amount", "mean": 100.0, "std": 50.0}],
            "categorical": [{"name": "merchant_category", "vocabulary": ["gaming", "grocery"]}],
        }
    )
    torch.manual_seed(0)
    torch.jit.script(load_model_builder(app)(pre.width, 4).eval()).save(str(folder / "model.pt"))
    (folder / "preprocessor.json").write_text(pre.model_dump_json())
    return folder


def _evaluation(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Encoded eval rows for the 3-column preprocessor above (amount, gaming, grocery)."""
    rng = np.random.default_rng(1)
    amount = rng.normal(0, 1, n)
    cat = rng.integers(0, 3, n)  # 2 = outside the vocabulary
    x = np.stack([amount, cat == 0, cat == 1], axis=1).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * amount + (cat == 0))))).astype(np.float32)
    return x, y


def _register(cfg, app: AppConfig, folder: Path, auc: float) -> RegisteredVersion:
    return log_training_run(
        cfg,
        app,
        model_dir=_model_dir(app, folder),
        params={"epochs": 2, "learning_rate": 0.01},
        history=[
            {"epoch": 1, "step": 10, "train_loss": 0.6, "val_loss": 0.5, "val_auc": auc - 0.1},
            {"epoch": 2, "step": 20, "train_loss": 0.4, "val_loss": 0.45, "val_auc": auc},
        ],
        metrics={"val_auc": auc, "val_loss": 0.45, "val_accuracy": 0.9},
        dataset_sha256=SHA,
        feature_spec=app.features,
        run_name="unit-run",
        evaluation=_evaluation(),
    )


@pytest.fixture(scope="module")
def registered(store, tmp_path_factory) -> tuple[RegisteredVersion, RegisteredVersion]:
    cfg, app = store
    tmp = tmp_path_factory.mktemp("models")
    return _register(cfg, app, tmp / "a", 0.8), _register(cfg, app, tmp / "b", 0.85)


def test_versions_registered_with_tags_and_card(store, registered) -> None:
    cfg, _ = store
    first, second = registered
    assert (first.version, second.version) == ("1", "2")
    versions = list_versions(cfg, "fraud")
    assert [v["version"] for v in versions] == ["1", "2"]
    tags = versions[1]["tags"]
    assert tags["dataset_sha256"] == SHA and tags["team"] == "risk"
    assert tags["run_id"] == second.run_id and tags["gate_metric"] == "val_auc"
    assert float(tags["val_auc"]) == pytest.approx(0.85)
    assert tags["card_sha256"] == card_sha256(second.card) and versions[1]["complete"]
    card = get_model_card(cfg, "fraud", "2")
    assert card.version == "2" and card.team == "risk" and card.training_dataset_sha256 == SHA


def test_run_has_params_epoch_metrics_and_tags(store, registered) -> None:
    from mlflow import MlflowClient

    from mlplat.experiment import tracking_uri

    cfg, _ = store
    c = MlflowClient(tracking_uri(cfg))
    run = c.get_run(registered[0].run_id)
    assert run.data.params["learning_rate"] == "0.01"
    assert run.data.tags["team"] == "risk" and run.data.tags["dataset_sha256"] == SHA
    auc = c.get_metric_history(run.info.run_id, "val_auc")
    assert [(m.step, round(m.value, 2)) for m in auc] == [(1, 0.7), (2, 0.8)]
    assert run.data.metrics["best_val_auc"] == pytest.approx(0.8)
    artifacts = {f.path for f in c.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {
        "model/model.pt",
        "model/preprocessor.json",
        "model/feature_spec.json",
        "model/feature_spec.yaml",
        "model/model_card.json",
    }
    assert {f.path for f in c.list_artifacts(run.info.run_id, "shap")} == {"shap/shap_values.npz"}
    exp = c.get_experiment(run.info.experiment_id)
    assert exp.name == "fraud" and exp.artifact_location.endswith("/mlflow/artifacts/fraud")


def test_load_and_predict_proba(store, registered) -> None:
    cfg, _ = store
    model = load_model_version(cfg, "fraud", "2")
    assert model.card.version == "2" and model.metrics["val_auc"] == pytest.approx(0.85)
    assert model.feature_spec.label == "is_fraud"
    probs = model.predict_proba(
        [{"amount": 500.0, "merchant_category": "gaming"}, {"amount": None}, {}]
    )
    assert len(probs) == 3 and all(0.0 <= p <= 1.0 for p in probs)
    assert model.predict_proba([]) == []
    # Serving calls this per request in-process: one row must be fast.
    row = [{"amount": 12.0, "merchant_category": "grocery"}]
    for _ in range(20):
        model.predict_proba(row)
    samples = []
    for _ in range(200):
        t = time.perf_counter()
        model.predict_proba(row)
        samples.append(time.perf_counter() - t)
    p50_ms = statistics.median(samples) * 1000
    print(f"predict_proba 1 row p50 = {p50_ms:.3f} ms")
    assert p50_ms < 5.0


def test_unknown_model_and_version_name_the_known_ones(store, registered) -> None:
    cfg, _ = store
    with pytest.raises(NotFoundError, match=r"No registered model 'frud'\. Did you mean 'fraud'\?"):
        load_model_version(cfg, "frud", "1")
    with pytest.raises(
        NotFoundError, match=r"Model 'fraud' has no version '9'\. Versions: \['1', '2'\]"
    ):
        load_model_version(cfg, "fraud", "9")


def test_aliases(store, registered) -> None:
    cfg, _ = store
    assert get_alias(cfg, "fraud", "staging") is None
    set_alias(cfg, "fraud", "staging", "1")
    set_alias(cfg, "fraud", "staging", "2")  # moving an alias is how promotion works
    assert get_alias(cfg, "fraud", "staging") == "2"
    assert [v["aliases"] for v in list_versions(cfg, "fraud")] == [[], ["staging"]]
    with pytest.raises(NotFoundError, match=r"has no version '7'"):
        set_alias(cfg, "fraud", "staging", "7")
    with pytest.raises(UserError, match=r"Invalid alias"):
        set_alias(cfg, "fraud", "bad alias!", "1")


def test_card_lives_in_the_registry_with_eval_hash_fairness_and_shap(store, registered) -> None:
    cfg, _ = store
    card = get_model_card(cfg, "fraud", "1")
    assert card.revision == 1 and card.previous_sha256 == ""
    assert len(card.evaluation_dataset_sha256) == 64 and card.evaluation_dataset_sha256 != SHA
    slices = {(s.feature, s.value): s for s in card.fairness}
    assert set(slices) == {("merchant_category", v) for v in ("gaming", "grocery", "<other>")}
    assert sum(s.rows for s in slices.values()) == 300
    assert all(s.auc is None or 0.0 <= s.auc <= 1.0 for s in slices.values())
    assert [a.feature for a in card.shap_summary] and {a.feature for a in card.shap_summary} == {
        "amount", "merchant_category"}
    tags = list_versions(cfg, "fraud")[0]["tags"]
    assert tags["training_dataset_sha256"] == SHA
    assert tags["evaluation_dataset_sha256"] == card.evaluation_dataset_sha256
    assert json.loads(tags["mlplat.signature"])["inputs"][0] == {"name": "amount", "type": "double"}
    assert len(tags["feature_spec_sha256"]) == 64
    assert tags["mlplat.shap_artifact"].endswith("/shap/shap_values.npz")
    # Removing the artifact folder does not remove the card: it lives in the registry.
    artifacts = Path(cfg.root()) / "mlflow" / "artifacts"
    for f in artifacts.glob("fraud/*/artifacts/model/model_card.json"):
        f.unlink()
    assert get_model_card(cfg, "fraud", "1") == card
    # The tracker's journal is removed once everything reached the store.
    assert not list((Path(cfg.root()) / "mlflow" / "buffer").glob("*.db"))


def test_shap_on_100_rows_is_fast(store, registered) -> None:
    from mlplat.experiment._shap import shap_values

    cfg, _ = store
    model = load_model_version(cfg, "fraud", "2")
    x, _ = _evaluation(500)
    t0 = time.perf_counter()
    values, _, names = shap_values(model.module, model.preprocessor, x)
    elapsed = time.perf_counter() - t0
    assert values.shape == (100, 2) and names == ["amount", "merchant_category"]
    assert np.abs(values).sum() > 0
    print(f"SHAP 100 rows: {elapsed:.2f} s")


def test_tampered_registry_card_is_detected(store, registered) -> None:
    from mlflow import MlflowClient

    from mlplat.experiment import tracking_uri

    cfg, _ = store
    c = MlflowClient(tracking_uri(cfg), registry_uri=tracking_uri(cfg))
    original = c.get_model_version("fraud", "2").tags["mlplat.card.r1"]
    try:
        c.set_model_version_tag("fraud", "2", "mlplat.card.r1", original.replace(
            '"val_auc":0.85', '"val_auc":0.99'))
        with pytest.raises(CardIntegrityError, match=r"revision 1 of fraud v2 was tampered"):
            get_model_card(cfg, "fraud", "2")
        with pytest.raises(CardIntegrityError):
            load_model_version(cfg, "fraud", "2")
    finally:
        c.set_model_version_tag("fraud", "2", "mlplat.card.r1", original)
    assert get_model_card(cfg, "fraud", "2").metrics["val_auc"] == pytest.approx(0.85)


def test_card_edit_appends_a_revision_and_keeps_the_old_ones(store, registered) -> None:
    from mlplat.audit import AuditLog

    cfg, _ = store
    before = get_model_card(cfg, "fraud", "1")
    new = edit_model_card(cfg, "fraud", "1", {"limitations": "Not for new accounts."},
                          actor="alice", reason="Q1 review")
    assert (new.revision, new.previous_sha256) == (2, card_sha256(before))
    revs = card_revisions(cfg, "fraud", "1")
    assert [r.revision for r in revs] == [1, 2] and revs[0] == before
    assert get_model_card(cfg, "fraud", "1").limitations == "Not for new accounts."
    assert get_model_card(cfg, "fraud", "1", revision=1) == before
    assert list_versions(cfg, "fraud")[0]["tags"]["card_sha256"] == card_sha256(new)
    with pytest.raises(UserError, match=r"\['metrics'\] cannot be edited"):
        edit_model_card(cfg, "fraud", "1", {"metrics": {}}, actor="alice", reason="x")
    with pytest.raises(UserError, match=r"needs a reason"):
        edit_model_card(cfg, "fraud", "1", {"owner": "bob"}, actor="alice", reason=" ")
    with pytest.raises(NotFoundError, match=r"revisions 1\.\.2, not 5"):
        get_model_card(cfg, "fraud", "1", revision=5)
    last = AuditLog(cfg).events()[-1]
    assert (last.action, last.target, last.actor) == ("edit_model_card", "fraud/1", "alice")


def test_delete_guard_refuses_live_versions_and_audits(store, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from mlplat.audit import AuditLog

    cfg, app = store
    v = _register(cfg, app, tmp_path / "c", 0.8).version
    set_alias(cfg, "fraud", "canary", v)
    with pytest.raises(VersionInUseError, match=rf"fraud v{v} is serving live traffic \(alias canary\)"):
        delete_model_version(cfg, "fraud", v, actor="mallory", reason="cleanup")
    with pytest.raises(VersionInUseError):
        delete_model_card(cfg, "fraud", v, actor="mallory")
    denied = [e for e in AuditLog(cfg).events() if e.outcome == "denied"]
    assert [(e.action, e.actor) for e in denied[-2:]] == [
        ("delete_model_version", "mallory"), ("delete_model_card", "mallory")]
    assert denied[-1].details["referenced_by"] == ["canary"]

    web = TestClient(governance_webhook_app(cfg))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u-1", "operation": "DELETE", "userInfo": {"username": "kube"},
                          "oldObject": {"metadata": {"name": "fraud-v", "labels": {
                              "mlplat.io/model": "fraud", "mlplat.io/version": v}}}}}
    resp = web.post(ADMISSION_PATH, json=review)
    assert resp.status_code == 200
    body = resp.json()["response"]
    assert body["uid"] == "u-1" and body["allowed"] is False
    assert "serving live traffic" in body["status"]["message"]
    for bad in (b"not json", b"{}", json.dumps({**review, "request": {"operation": "DELETE"}})):
        r = web.post(ADMISSION_PATH, content=bad)
        assert r.status_code == 400 and r.json()["error"]
    spec_form = {**review, "request": {**review["request"], "oldObject": {"spec": {
        "model": "fraud", "version": "1"}}}}
    assert web.post(ADMISSION_PATH, json=spec_form).json()["response"]["allowed"] is True

    set_alias(cfg, "fraud", "canary", "1")  # the alias moved on: v is no longer live
    assert web.post(ADMISSION_PATH, json=review).json()["response"]["allowed"] is True
    delete_model_version(cfg, "fraud", v, actor="alice", reason="superseded")
    assert v not in [x["version"] for x in list_versions(cfg, "fraud")]
    last = AuditLog(cfg).events()[-1]
    assert (last.action, last.outcome, last.target) == ("delete_model_version", "ok", f"fraud/{v}")
    assert AuditLog(cfg).verify().ok


def test_cli_card_show_and_revisions(store, registered) -> None:
    from typer.testing import CliRunner

    from mlplat.cli import app as cli

    cfg, _ = store
    runner = CliRunner()
    shown = runner.invoke(cli, ["models", "card", "show", "fraud:2", "--json",
                                "--config", str(REPO / "platform.yaml")])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["version"] == "2" and body["sha256"] == card_sha256(get_model_card(cfg, "fraud", "2"))
    revs = runner.invoke(cli, ["models", "card", "revisions", "fraud:2", "--json",
                               "--config", str(REPO / "platform.yaml")])
    assert revs.exit_code == 0 and [r["revision"] for r in json.loads(revs.output)] == [1]
    bad = runner.invoke(cli, ["models", "delete", "fraud", "--reason", "x"])
    assert isinstance(bad.exception, UserError) and "MODEL:VERSION" in str(bad.exception)
