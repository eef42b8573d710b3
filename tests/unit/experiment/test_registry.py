"""Logging, registering and loading a version against a real embedded MLflow store (no Ray)."""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import pytest
import torch

from mlplat.apps import AppConfig, load_app
from mlplat.config import load_config
from mlplat.contracts.v1 import Preprocessor
from mlplat.errors import NotFoundError, UserError
from mlplat.experiment import (
    CardIntegrityError,
    RegisteredVersion,
    card_sha256,
    get_alias,
    get_model_card,
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
        "model/model_card.json",
    }
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


def test_edited_card_is_detected(store, registered) -> None:
    cfg, _ = store
    card_file = next(
        Path(cfg.root()).glob("mlflow/artifacts/fraud/*/artifacts/model/model_card.json")
    )
    shutil.rmtree(Path(cfg.root()) / "mlflow" / "cache")  # the load must read the edited artifact
    original = card_file.read_text()
    try:
        card_file.write_text(original.replace('"val_auc":0.8', '"val_auc":0.99'))
        version = "1" if '"version":"1"' in original else "2"
        with pytest.raises(CardIntegrityError, match=r"does not match its registered hash"):
            get_model_card(cfg, "fraud", version)
    finally:
        card_file.write_text(original)
