"""Logging a finished training run to MLflow and registering its model version with a card.

Order, and why:
1. run + params + per-epoch metrics + the model folder (model.pt, preprocessor.json,
   feature_spec.json) — nothing here depends on the version number;
2. create the model version (source = the run's ``model/`` folder) → MLflow assigns the number;
3. write ``model/model_card.json`` (the card names that number) into the same folder;
4. tag the version ``card_sha256`` LAST. The tag is the "complete" marker: a reader that finds
   a version without it knows registration did not finish (and step 2–4 failures delete the
   version, so that is only visible for the few milliseconds in between).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import FeatureSpec, ModelCard
from mlplat.errors import InfraError
from mlplat.experiment._cards import build_card, canonical_card_json, card_sha256
from mlplat.experiment._store import client, ensure_experiment, tracking_uri

MODEL_ARTIFACT_DIR = "model"
CARD_FILE = "model_card.json"
FEATURE_SPEC_FILE = "feature_spec.json"
CARD_SHA_TAG = "card_sha256"
EPOCH_METRICS = ("train_loss", "val_loss", "val_auc")
FINAL_METRIC_PREFIX = "best_"
"""Final metrics of the exported checkpoint are logged as ``best_<name>`` so they do not mix
with the per-epoch series of the same name."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version registered from a training run."""

    name: str
    version: str
    run_id: str
    card: ModelCard


def _ensure_registered_model(c: Any, name: str, team: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            c.create_registered_model(name, tags={"team": team})
        except MlflowException as race:
            if race.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def log_training_run(
    cfg: PlatformConfig,
    app: AppConfig,
    *,
    model_dir: Path,
    params: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: dict[str, float],
    dataset_sha256: str,
    feature_spec: FeatureSpec,
    run_name: str,
) -> RegisteredVersion:
    """Log one training run and register its model as a new version of ``app.name``.

    Call this on the job driver only: it is the single writer to the tracking store.

    Args:
        cfg: Platform config (tracking store, artifact root).
        app: The app; its name is the experiment and registered-model name.
        model_dir: Folder holding ``model.pt`` (TorchScript) and ``preprocessor.json``;
            ``feature_spec.json`` and ``model_card.json`` are added to what is logged.
        params: Run parameters (the TrainingConfig after overrides and run facts).
        history: One dict per epoch with ``epoch`` and EPOCH_METRICS; logged with step=epoch.
        metrics: Final validation metrics of the exported model (go on the card).
        dataset_sha256: ``content_sha256`` of the training dataset's manifest.
        feature_spec: What the model consumes (from the dataset manifest).
        run_name: MLflow run name (the Ray Train run name).

    Returns:
        The registered version with its card.

    Raises:
        InfraError: the tracking store failed; a half-registered version is deleted first.

    Example:
        >>> v = log_training_run(cfg, app, model_dir=Path("out"), params={"epochs": 4},
        ...                      history=[], metrics={"val_auc": 0.93}, dataset_sha256=sha,
        ...                      feature_spec=app.features, run_name="fraud-1")
        >>> v.card.version == v.version
        True
    """
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    experiment_id = ensure_experiment(cfg, app.name, {"team": app.team})
    tags = {"team": app.team, "app": app.name, "dataset_sha256": dataset_sha256}
    gate = app.serving.gate_metric
    run_id, version = "", None
    try:
        run = c.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        now_ms = int(time.time() * 1000)
        series = [
            Metric(key, float(entry[key]), now_ms, int(entry["epoch"]))
            for entry in history
            for key in EPOCH_METRICS
            if key in entry
        ]
        finals = [
            Metric(f"{FINAL_METRIC_PREFIX}{k}", float(v), now_ms, 0) for k, v in metrics.items()
        ]
        c.log_batch(
            run_id,
            metrics=series + finals,
            params=[Param(k, str(v)) for k, v in sorted(params.items())],
        )
        (model_dir / FEATURE_SPEC_FILE).write_text(feature_spec.model_dump_json(indent=2))
        c.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_DIR)

        _ensure_registered_model(c, app.name, app.team)
        version_tags = {**tags, "run_id": run_id, "gate_metric": gate}
        if gate in metrics:
            version_tags[gate] = repr(float(metrics[gate]))
        mv = c.create_model_version(
            app.name,
            source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}",
            run_id=run_id,
            tags=version_tags,
            description=app.description,
        )
        version = str(mv.version)
        card = build_card(
            app,
            version=version,
            dataset_sha256=dataset_sha256,
            metrics=metrics,
            feature_spec=feature_spec,
            created_at=datetime.now(UTC),
        )
        card_path = model_dir / CARD_FILE
        card_path.write_text(canonical_card_json(card))
        c.log_artifact(run_id, str(card_path), MODEL_ARTIFACT_DIR)
        c.set_model_version_tag(app.name, version, CARD_SHA_TAG, card_sha256(card))
        c.set_tag(run_id, "model_version", version)
        c.set_terminated(run_id, "FINISHED")
    except (MlflowException, OSError) as exc:
        _cleanup(c, app.name, version, run_id)
        raise InfraError(
            f"Logging run '{run_name}' to MLflow at {tracking_uri(cfg)} failed: {exc}. "
            "The Ray Train checkpoints are intact; rerun the job with the same --run-name to "
            "retry (it resumes the finished run and only re-registers)."
        ) from exc
    return RegisteredVersion(name=app.name, version=version, run_id=run_id, card=card)


def _cleanup(c: Any, name: str, version: str | None, run_id: str) -> None:
    # Best effort: the store just failed, so these may fail too; the original error matters more.
    try:
        if version is not None:
            c.delete_model_version(name, version)
        if run_id:
            c.set_terminated(run_id, "FAILED")
    except Exception:  # the store is already failing; keep the original error
        pass
