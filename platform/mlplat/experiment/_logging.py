"""Logging a finished training run to MLflow and registering its model version with a card.

Run data (params, per-epoch metrics, tags, the model folder, SHAP values) goes through the
``BufferedTracker``: it is journaled locally first and drained to MLflow, so a tracking outage
loses nothing (the journal replays when the server is back). Registration needs the registry,
so it waits for the drain.

Order, and why:
1. run + params + per-epoch metrics + the model folder (model.pt, preprocessor.json,
   feature_spec.json/.yaml) + ``shap/shap_values.npz`` — nothing depends on the version number;
2. create the model version (source = the run's ``model/`` folder) → MLflow assigns the number;
3. write ``model/model_card.json`` (a copy for the MLflow UI) and the card itself into the
   version's registry tags (``_card_store``);
4. tag the version ``card_sha256`` LAST. The tag is the "complete" marker: a reader that finds
   a version without it knows registration did not finish (and step 2–4 failures delete the
   version, so that is only visible for the few milliseconds in between).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import (
    FeatureAttribution,
    FeatureSpec,
    ModelCard,
    Preprocessor,
    SliceMetrics,
)
from mlplat.errors import InfraError
from mlplat.experiment import _shap
from mlplat.experiment._card_store import write_card
from mlplat.experiment._cards import build_card, canonical_card_json
from mlplat.experiment._store import client, ensure_experiment, tracking_uri
from mlplat.experiment._tracker import open_tracker

MODEL_ARTIFACT_DIR = "model"
CARD_FILE = "model_card.json"
FEATURE_SPEC_FILE = "feature_spec.json"
FEATURE_SPEC_YAML = "feature_spec.yaml"
MODEL_FILE = "model.pt"
DRIFT_REFERENCE_FILE = "drift_reference.parquet"
"""A seeded sample of the raw training features, logged with the model: the drift monitor's
reference for the version (mlplat.monitoring loads it when the version first serves)."""
PREPROCESSOR_FILE = "preprocessor.json"
SHAP_ARTIFACT_DIR = "shap"
SHAP_FILE = "shap_values.npz"
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


def _signature(model_dir: Path) -> dict[str, Any]:
    """Input/output schema of the exported model (from its preprocessor): the version's
    ``mlplat.signature`` tag, checked against serving contracts by the deployment plane."""
    pre = Preprocessor.model_validate_json((model_dir / PREPROCESSOR_FILE).read_text())
    return {
        "inputs": [{"name": c.name, "type": "double"} for c in pre.numeric]
        + [{"name": c.name, "type": "string", "vocabulary": c.vocabulary} for c in pre.categorical],
        "outputs": [{"name": "score", "type": "double", "range": [0.0, 1.0]}],
    }


def _explain(
    model_dir: Path, evaluation: tuple[Any, Any], out: Path
) -> tuple[list[SliceMetrics], list[FeatureAttribution]]:
    """SHAP values (written to ``out/shap_values.npz``) and fairness slices on the eval set."""
    import numpy as np
    import torch

    module = torch.jit.load(str(model_dir / MODEL_FILE), map_location="cpu").eval()
    pre = Preprocessor.model_validate_json((model_dir / PREPROCESSOR_FILE).read_text())
    x, y = np.asarray(evaluation[0], dtype=np.float32), np.asarray(evaluation[1], np.float32)
    values, idx, names = _shap.shap_values(module, pre, x)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHAP_FILE).write_bytes(_shap.shap_npz(values, idx, names))
    return _shap.slice_metrics(module, pre, x, y), _shap.shap_summary(values, names)


def _remove_journal(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.rmtree(path.with_name(path.name + ".spool"), ignore_errors=True)


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
    evaluation: tuple[Any, Any] | None = None,
    evaluation_dataset_sha256: str = "",
    drain_timeout_s: float = 120.0,
) -> RegisteredVersion:
    """Log one training run and register its model as a new version of ``app.name``.

    Call this on the job driver only: it is the single writer to the tracking store.

    Args:
        cfg: Platform config (tracking store, artifact root).
        app: The app; its name is the experiment and registered-model name.
        model_dir: Folder holding ``model.pt`` (TorchScript) and ``preprocessor.json``;
            ``feature_spec.json``/``.yaml`` and ``model_card.json`` are added to what is logged.
        params: Run parameters (the TrainingConfig after overrides and run facts).
        history: One dict per epoch with ``epoch`` and EPOCH_METRICS; logged with step=epoch.
        metrics: Final validation metrics of the exported model (go on the card).
        dataset_sha256: ``content_sha256`` of the training dataset's manifest.
        feature_spec: What the model consumes (from the dataset manifest).
        run_name: MLflow run name (the Ray Train run name).
        evaluation: ``(x, y)``, the encoded evaluation matrix and labels: SHAP values (stored
            as ``shap/shap_values.npz``, summarized on the card) and per-slice fairness
            metrics are computed on it. None skips both.
        evaluation_dataset_sha256: SHA-256 of the evaluation rows (default: of ``evaluation``,
            else the training dataset's).
        drain_timeout_s: How long to wait for buffered run data to reach MLflow before
            registering.

    Returns:
        The registered version with its card.

    Raises:
        InfraError: the tracking store failed; a half-registered version is deleted first.
            Run data that could not be delivered stays in the tracker's journal and replays
            on the next run with the same run name.

    Example:
        >>> v = log_training_run(cfg, app, model_dir=Path("out"), params={"epochs": 4},
        ...                      history=[], metrics={"val_auc": 0.93}, dataset_sha256=sha,
        ...                      feature_spec=app.features, run_name="fraud-1")
        >>> v.card.version == v.version
        True
    """
    import yaml
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    experiment_id = ensure_experiment(cfg, app.name, {"team": app.team})
    eval_sha = evaluation_dataset_sha256 or (
        _shap.matrix_sha256(*evaluation) if evaluation is not None else dataset_sha256
    )
    tags = {
        "team": app.team,
        "app": app.name,
        "dataset_sha256": dataset_sha256,
        "evaluation_dataset_sha256": eval_sha,
    }
    gate = app.serving.gate_metric
    run_id, version = "", None
    tracker = open_tracker(cfg, f"{app.name}-{run_name}")
    try:
        run = tracker.start_run(experiment_id, run_name, tags)
        tracker.log_params(run, dict(sorted(params.items())))
        for entry in history:
            tracker.log_metrics(
                run, {k: float(entry[k]) for k in EPOCH_METRICS if k in entry}, step=int(entry["epoch"])
            )
        tracker.log_metrics(run, {f"{FINAL_METRIC_PREFIX}{k}": float(v) for k, v in metrics.items()})
        (model_dir / FEATURE_SPEC_FILE).write_text(feature_spec.model_dump_json(indent=2))
        (model_dir / FEATURE_SPEC_YAML).write_text(
            yaml.safe_dump(feature_spec.model_dump(mode="json"), sort_keys=False)
        )
        fairness: list[SliceMetrics] = []
        summary: list[FeatureAttribution] = []
        if evaluation is not None:
            shap_dir = model_dir.parent / f".{model_dir.name}-shap"
            fairness, summary = _explain(model_dir, evaluation, shap_dir)
            tracker.log_artifacts(run, shap_dir, SHAP_ARTIFACT_DIR)
            shutil.rmtree(shap_dir, ignore_errors=True)
        tracker.log_artifacts(run, model_dir, MODEL_ARTIFACT_DIR)
        if not tracker.flush(drain_timeout_s):
            s = tracker.stats()
            raise InfraError(
                f"MLflow at {tracking_uri(cfg)} is unreachable (circuit {s.breaker}); "
                f"{s.pending + s.in_flight} run writes are kept in {tracker.buffer_path} and "
                "replay when it is back. The model is NOT registered: resubmit the job with "
                f"--run-name {run_name} once the tracking server is up (it resumes the finished "
                "run and only registers)."
            )
        run_id = tracker.server_run_id(run) or ""
        artifact_uri = c.get_run(run_id).info.artifact_uri

        _ensure_registered_model(c, app.name, app.team)
        version_tags = {
            **tags,
            "run_id": run_id,
            "gate_metric": gate,
            "training_dataset_sha256": dataset_sha256,
            "feature_spec_sha256": hashlib.sha256(
                (model_dir / FEATURE_SPEC_YAML).read_bytes()
            ).hexdigest(),
            "mlplat.signature": json.dumps(_signature(model_dir), sort_keys=True),
        }
        if evaluation is not None:
            version_tags["mlplat.shap_artifact"] = f"{artifact_uri}/{SHAP_ARTIFACT_DIR}/{SHAP_FILE}"
        if gate in metrics:
            version_tags[gate] = repr(float(metrics[gate]))
        mv = c.create_model_version(
            app.name,
            source=f"{artifact_uri}/{MODEL_ARTIFACT_DIR}",
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
            evaluation_dataset_sha256=eval_sha,
            fairness=fairness,
            shap_summary=summary,
        )
        card_path = model_dir / CARD_FILE
        card_path.write_text(canonical_card_json(card))
        c.log_artifact(run_id, str(card_path), MODEL_ARTIFACT_DIR)
        write_card(c, app.name, version, card)  # card_sha256 (the "complete" marker) last
        c.set_tag(run_id, "model_version", version)
        c.set_terminated(run_id, "FINISHED")
    except (MlflowException, OSError) as exc:
        _cleanup(c, app.name, version, run_id)
        raise InfraError(
            f"Logging run '{run_name}' to MLflow at {tracking_uri(cfg)} failed: {exc}. "
            "The Ray Train checkpoints are intact; rerun the job with the same --run-name to "
            "retry (it resumes the finished run and only re-registers)."
        ) from exc
    finally:
        if tracker.close(timeout_s=5):
            _remove_journal(tracker.buffer_path)
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
