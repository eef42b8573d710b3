"""Training on the shared cluster: 2 DDP workers on training-spot, register, load, resume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlplat.apps import AppConfig, load_app
from mlplat.config import PlatformConfig, load_config
from mlplat.errors import UserError
from mlplat.experiment import get_model_card, list_versions, load_model_version
from mlplat.training import TrainResult, train
from tests.unit.training.synthetic import make_frame, write_dataset

pytestmark = pytest.mark.integration

RUN = "it-fraud-resume"


@pytest.fixture(scope="module")
def env(
    ray_cluster: str, session_home: Path, repo_root: Path
) -> tuple[PlatformConfig, AppConfig, Path]:
    cfg = load_config(repo_root / "platform.yaml")
    app = load_app("fraud", cfg)
    dataset = write_dataset(session_home / "datasets" / "fraud-synth", app.features, n_rows=4000)
    return cfg, app, dataset


@pytest.fixture(scope="module")
def first(env) -> tuple[TrainResult, float]:
    cfg, app, dataset = env
    t = time.perf_counter()
    result = train(
        cfg, app, str(dataset), run_name=RUN, overrides={"epochs": 2, "checkpoint_every_steps": 10}
    )
    return result, time.perf_counter() - t


def test_trains_registers_and_checkpoints(env, first, session_home: Path) -> None:
    cfg, app, _ = env
    result, wall_s = first
    print(f"2-worker training wall time: {wall_s:.1f}s, timings {result.timings_s}")
    assert result.model_name == "fraud" and result.resumed_from_step == 0
    assert result.metrics["val_auc"] > 0.75, result.metrics
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
    assert [h["epoch"] for h in result.history] == [1, 2]  # one entry per epoch

    versions = {v["version"]: v for v in list_versions(cfg, "fraud")}
    tags = versions[result.version]["tags"]
    assert tags["dataset_sha256"] == result.dataset_sha256 and tags["run_id"] == result.run_id
    card = get_model_card(cfg, "fraud", result.version)
    assert (card.team, card.version) == ("risk", result.version)
    assert card.training_dataset_sha256 == result.dataset_sha256
    assert card.metrics["val_auc"] == pytest.approx(result.metrics["val_auc"])

    run_dir = session_home / "checkpoints" / RUN
    kept = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert 1 <= len(kept) <= app.training.keep_checkpoints + 1, kept  # best N + latest
    assert Path(result.checkpoint_path).is_dir()


def test_loaded_version_scores_rows(env, first) -> None:
    cfg, app, _ = env
    result, _ = first
    model = load_model_version(cfg, "fraud", result.version)
    frame = make_frame(app.features, 200, seed=99)
    rows = frame[app.features.feature_names()].to_dict("records")
    rows[0]["txn_count_24h"] = None  # a feature outside its TTL
    probs = model.predict_proba(rows)
    assert len(probs) == 200 and all(0.0 <= p <= 1.0 for p in probs)
    fraud = [p for p, y in zip(probs, frame["is_fraud"], strict=True) if y == 1]
    legit = [p for p, y in zip(probs, frame["is_fraud"], strict=True) if y == 0]
    assert sum(fraud) / len(fraud) > sum(legit) / len(legit)  # it learned the signal


def test_resubmitted_run_resumes(env, first) -> None:
    cfg, app, dataset = env
    result, _ = first
    again = train(
        cfg, app, str(dataset), run_name=RUN, overrides={"epochs": 3, "checkpoint_every_steps": 10}
    )
    last_step = result.history[-1]["step"]
    assert again.resumed_from_step == last_step > 0
    assert [h["epoch"] for h in again.history] == [1, 2, 3]
    assert again.history[:2] == result.history  # the first two epochs were not retrained
    assert int(again.version) == int(result.version) + 1


def test_resubmission_with_another_shape_fails_before_cluster_time(env, first) -> None:
    cfg, app, dataset = env
    t = time.perf_counter()
    with pytest.raises(UserError, match=r"already has checkpoints for a different model"):
        train(cfg, app, str(dataset), run_name=RUN, overrides={"hidden_units": 8})
    assert time.perf_counter() - t < 10
