"""``train()``: validate, run a Ray Train ``TorchTrainer`` on the training pool, export, register.

Order of work, cheapest checks first (so mistakes never cost cluster time):
overrides → dataset + feature spec → run-name reuse → Ray Train fit → export on the driver
→ MLflow logging and registration (through the experiment plane's public API).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import ValidationError

from mlplat.apps import AppConfig, TrainingConfig
from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, NotFoundError, UserError, did_you_mean
from mlplat.training import _dataset, _loop

logger = logging.getLogger(__name__)

MODEL_FILE = "model.py"
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RUN_META_FILE = "mlplat_run.json"
TORCH_TIMEOUT_S = 60
"""Collective timeout: a dead DDP peer is detected within this, then Train restarts the group."""
MAX_FAILURES = 2
"""Worker-group restarts after real failures (a dead worker, OOM); node preemptions (drains)
have their own, unlimited budget in Ray Train (FailureConfig.max_preemption_failures=-1)."""
PREEMPTION_POLL_S = "1"
"""How often Ray Train asks the GCS whether a training node is being drained (Ray's default is
5 s); passed to the controller through RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S unless already set."""


@dataclass
class TrainResult:
    """What one ``train()`` call produced. ``metrics`` are the exported (best) checkpoint's."""

    run_id: str
    model_name: str
    version: str
    metrics: dict[str, float]
    dataset_sha256: str
    checkpoint_path: str
    run_name: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[list[float]] = field(default_factory=list)
    """``[step, rank-0 train loss]`` for every optimizer step of the run, resumes included."""
    resumed_from_step: int = 0
    worker_restarts: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The one-line summary jobs/train.py prints."""
        return {
            "run_id": self.run_id,
            "model": self.model_name,
            "version": self.version,
            "metrics": self.metrics,
            "dataset_sha256": self.dataset_sha256,
            "run_name": self.run_name,
            "checkpoint_path": self.checkpoint_path,
            "resumed_from_step": self.resumed_from_step,
            "timings_s": self.timings_s,
        }


def apply_overrides(base: TrainingConfig, overrides: dict[str, Any] | None) -> TrainingConfig:
    """Return ``base`` with ``overrides`` applied and validated.

    Args:
        base: The app's training config (``app.training``).
        overrides: Field → value; strings from ``--set k=v`` are coerced (``"0.02"`` → 0.02).

    Raises:
        UserError: an unknown key (the message names it and lists the valid keys) or a value
            the field rejects.

    Example:
        >>> apply_overrides(app.training, {"learning_rate": "0.02"}).learning_rate
        0.02
    """
    overrides = dict(overrides or {})
    valid = sorted(TrainingConfig.model_fields)
    for key in overrides:
        if key not in TrainingConfig.model_fields:
            raise UserError(
                f"Unknown training override '{key}'.{did_you_mean(key, valid)} Valid keys: {valid}."
            )
    try:
        return TrainingConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"Invalid training override: {problems}") from exc


def load_model_builder(app: AppConfig) -> Callable[[int, int], Any]:
    """Import ``build_model`` from ``apps/<app>/model.py``, pickled by value for the workers.

    Raises:
        NotFoundError: the app has no model.py or it defines no ``build_model``.
    """
    from ray import cloudpickle  # Ray serialises with its vendored copy, not `cloudpickle`

    path = app.path / MODEL_FILE
    if not path.is_file():
        raise NotFoundError(
            f"App '{app.name}' has no {MODEL_FILE} at {path}; it must define "
            "build_model(input_width: int, hidden_units: int) -> torch.nn.Module."
        )
    module_name = f"mlplat_app_{app.name.replace('-', '_')}_model"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"Cannot import {path} as a Python module; check the file.")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    builder = getattr(module, "build_model", None)
    if not callable(builder):
        raise NotFoundError(f"{path} defines no build_model(input_width, hidden_units); add it.")
    # Workers may run from another working directory (ray job submit, KubeRay) where this
    # module is not importable, so its code travels inside the pickle.
    cloudpickle.register_pickle_by_value(module)
    return builder  # type: ignore[no-any-return]


def _storage(cfg: PlatformConfig) -> str:
    return cfg.checkpoint_root()


def _fs_and_path(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def _check_run_reuse(run_dir: str, fingerprint: dict[str, Any]) -> None:
    """A resubmitted run resumes its checkpoints: refuse if they belong to another model shape."""
    import pyarrow.fs as pafs

    fs, path = _fs_and_path(run_dir)
    meta_path = f"{path}/{RUN_META_FILE}"
    if fs.get_file_info(meta_path).type == pafs.FileType.File:
        with fs.open_input_stream(meta_path) as f:
            previous = json.loads(f.read().decode())
        if previous != fingerprint:
            diff = {k: (previous.get(k), v) for k, v in fingerprint.items() if previous.get(k) != v}
            raise UserError(
                f"Run '{Path(path).name}' already has checkpoints for a different model or "
                f"dataset ({diff}, old vs new); resuming them is impossible. Pick another "
                f"--run-name, or delete {run_dir} to start this run over."
            )
        return
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(meta_path) as f:
        f.write(json.dumps(fingerprint, sort_keys=True).encode())


def _training_pool_has_gpu(pool_label: dict[str, str]) -> bool:
    import ray

    for node in ray.nodes():
        labels = node.get("Labels") or {}
        if node.get("Alive") and all(labels.get(k) == v for k, v in pool_label.items()):
            if node.get("Resources", {}).get("GPU", 0) > 0:
                return True
    return False


def _read_checkpoint_json(checkpoint: Any, name: str, default: Any = None) -> Any:
    with checkpoint.as_directory() as folder:
        path = Path(folder) / name
        if default is not None and not path.is_file():  # written by an older mlplat
            return default
        return json.loads(path.read_text())


def _export(module: Any, width: int, out: Path) -> None:
    """TorchScript the trained module: float32 [N, width] → logits [N], no tenant code needed."""
    import torch

    module.eval()
    try:
        scripted = torch.jit.script(module)
    except Exception:  # not every tenant module is scriptable; tracing fits MLPs
        scripted = torch.jit.trace(module, torch.zeros(2, width))
    scripted.save(str(out))


def default_run_name(app: AppConfig) -> str:
    """``<app>-<UTC time>-<6 hex>``: unique, sortable, valid as a folder name."""
    return f"{app.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def train(
    cfg: PlatformConfig,
    app: AppConfig,
    dataset: str,
    run_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    min_step_s: float = 0.0,
    node_labels: dict[str, str] | None = None,
) -> TrainResult:
    """Train ``app``'s model on ``dataset`` with Ray Train, then log and register it in MLflow.

    A run checkpoints every ``checkpoint_every_steps`` steps and at each epoch end under
    ``<root>/checkpoints/<run_name>``; calling ``train`` again with the same ``run_name``
    resumes from the latest checkpoint (e.g. raise ``epochs`` to train further).

    Args:
        cfg: Platform config (storage root, tracking store).
        app: The app (``load_app``); its ``training`` section, features and model.py are used.
        dataset: Dataset folder written by the data plane, or its manifest.json.
        run_name: Ray Train run name (checkpoint folder). Defaults to a fresh unique name.
        overrides: TrainingConfig fields to change for this run, e.g. ``{"epochs": 2}``.
        min_step_s: Lower bound on seconds per optimizer step (0 = as fast as possible). Fault
            drills and benchmarks use it so a tiny run lasts long enough to interrupt.
        node_labels: Extra node labels workers must match besides the pool's, e.g. a zone or
            a dedicated set of nodes (``{"mlplat.io/drill": "a1"}``).

    Returns:
        The MLflow run id, registered model name and version, final validation metrics,
        dataset SHA-256 and the exported checkpoint's path.

    Raises:
        UserError: bad override, dataset, run name or run-name reuse (before any cluster time).
        InfraError: Ray Train failed after ``FailureConfig(max_failures=2)`` retries.

    Example:
        >>> from mlplat.apps import load_app
        >>> from mlplat.config import load_config
        >>> cfg = load_config()
        >>> result = train(cfg, load_app("fraud", cfg), ".mlplat/datasets/fraud-v1",
        ...                overrides={"epochs": 2})
        >>> result.model_name, result.metrics["val_auc"] > 0.5
        ('fraud', True)
    """
    t0 = time.perf_counter()  # before the heavy imports below: they are part of launch time
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from mlplat.cluster import pool_selector
    from mlplat.experiment import ensure_experiment, log_training_run

    tcfg = apply_overrides(app.training, overrides)
    if min_step_s < 0:
        raise UserError(f"min_step_s must be >= 0 seconds, got {min_step_s}.")
    run_name = run_name or default_run_name(app)
    if not RUN_NAME_RE.match(run_name):
        raise UserError(
            f"Invalid run name '{run_name}': use letters, digits, '_', '.', '-' "
            "(it names the checkpoint folder), at most 128 characters."
        )
    build_model = load_model_builder(app)
    data = _dataset.load_dataset(dataset, app.features)
    split = _dataset.prepare_split(data, tcfg.validation_fraction, tcfg.seed)
    sha = data.manifest.content_sha256
    width = split.preprocessor.width
    fingerprint = {
        "app": app.name,
        "dataset_sha256": sha,
        "hidden_units": tcfg.hidden_units,
        "input_width": width,
        "seed": tcfg.seed,
    }
    storage = _storage(cfg)
    _check_run_reuse(f"{storage}/{run_name}", fingerprint)
    t_prepared = time.perf_counter()

    if not ray.is_initialized():
        ray.init()  # address from RAY_ADDRESS, else the running local cluster
    # Ray Train propagates this variable from the driver to its controller (how it is meant
    # to be configured); a faster drain signal leaves more of the deadline for the checkpoint.
    os.environ.setdefault("RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", PREEMPTION_POLL_S)
    selector = {**(node_labels or {}), **pool_selector(tcfg.pool)}
    use_gpu = _training_pool_has_gpu(selector)
    submission_id = uuid.uuid4().hex
    data_ref = ray.put(
        {
            "x_train": split.x_train,
            "y_train": split.y_train,
            "x_val": split.x_val,
            "y_val": split.y_val,
        }
    )
    trainer = TorchTrainer(
        _loop.train_loop_per_worker,
        train_loop_config={
            "data_ref": data_ref,
            "build_model": build_model,
            "input_width": width,
            "hidden_units": tcfg.hidden_units,
            "learning_rate": tcfg.learning_rate,
            "epochs": tcfg.epochs,
            "batch_size": tcfg.batch_size,
            "checkpoint_every_steps": tcfg.checkpoint_every_steps,
            "seed": tcfg.seed,
            "submission_id": submission_id,
            "fingerprint": fingerprint,
            "min_step_s": min_step_s,
            # What really ran (replays included), for drills and post-mortems; local only.
            "step_log_dir": (
                None if "://" in storage else f"{storage}/{run_name}/{_loop.STEP_LOG_DIR}"
            ),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=TORCH_TIMEOUT_S),
        # ray.train re-exports Train v2's ScalingConfig at runtime; the stubs still name v1's.
        scaling_config=ray.train.ScalingConfig(  # type: ignore[call-arg]
            num_workers=tcfg.num_workers,
            resources_per_worker={"CPU": tcfg.cpus_per_worker},
            use_gpu=use_gpu,
            label_selector=selector,
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=tcfg.keep_checkpoints,
                checkpoint_score_attribute="val_auc",
                checkpoint_score_order="max",
            ),
        ),
    )
    # The driver idles while workers train: warm the tracking store meanwhile (MLflow import,
    # SQLite migrations on first use), so registration after fit does not pay for it.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlplat-store") as pool:
        store_ready = pool.submit(ensure_experiment, cfg, app.name, {"team": app.team})
        try:
            result = trainer.fit()
        except Exception as exc:  # Train raises its own error types; wrap them all
            raise InfraError(
                f"Training run '{run_name}' failed (worker failures are retried "
                f"{MAX_FAILURES} times): {exc}. Checkpoints so far are under "
                f"{storage}/{run_name}; resubmit with --run-name {run_name} to resume."
            ) from exc
        t_fit = time.perf_counter()
        try:
            store_ready.result()
        except Exception as exc:  # any failure here means the store is unusable right now
            raise InfraError(
                f"Training run '{run_name}' finished but the tracking store is unavailable: "
                f"{exc}. Checkpoints are under {storage}/{run_name}; resubmit with --run-name "
                f"{run_name} once the store is back to register without retraining."
            ) from exc
    if result.checkpoint is None:
        raise InfraError(f"Training run '{run_name}' reported no checkpoint; see the job logs.")
    history = _read_checkpoint_json(result.checkpoint, _loop.HISTORY_FILE)
    starts = _read_checkpoint_json(result.checkpoint, _loop.META_FILE)["starts"]
    step_losses = _read_checkpoint_json(result.checkpoint, _loop.STEPS_FILE, default=[])
    mine = [s for s in starts if s["submission"] == submission_id]
    # No start of ours recorded: the run had already finished every epoch; nothing was trained.
    resumed_from = int(mine[0]["step"]) if mine else int(history[-1]["step"]) if history else 0
    best = result.get_best_checkpoint(metric="val_auc", mode="max") or result.checkpoint

    import torch

    module = build_model(width, tcfg.hidden_units)
    with best.as_directory() as folder:
        state = torch.load(Path(folder) / _loop.STATE_FILE, weights_only=True)
    module.load_state_dict(state["model"])
    module.eval()
    metrics = _loop.evaluate(module, split.x_val, split.y_val)
    if np.isnan(metrics["val_auc"]):
        raise UserError("val_auc is undefined: the validation split has a single class.")

    with tempfile.TemporaryDirectory(prefix="mlplat-model-") as tmp:
        model_dir = Path(tmp)
        _export(module, width, model_dir / "model.pt")
        (model_dir / "preprocessor.json").write_text(split.preprocessor.model_dump_json(indent=2))
        _write_drift_reference(data.frame, app, model_dir, tcfg.seed)
        params: dict[str, Any] = {
            **tcfg.model_dump(),
            "dataset_sha256": sha,
            "run_name": run_name,
            "train_rows": len(split.y_train),
            "val_rows": len(split.y_val),
            "input_width": width,
            "use_gpu": use_gpu,
            "resumed_from_step": resumed_from,
        }
        logged = log_training_run(
            cfg,
            app,
            model_dir=model_dir,
            params=params,
            history=history,
            metrics=metrics,
            dataset_sha256=sha,
            feature_spec=data.manifest.feature_spec,
            run_name=run_name,
            # The held-out split: SHAP values, per-slice fairness and its SHA-256 on the card.
            evaluation=(split.x_val, split.y_val),
        )
    _refresh_catalog(cfg, logged.name)
    t_done = time.perf_counter()
    return TrainResult(
        run_id=logged.run_id,
        model_name=logged.name,
        version=logged.version,
        metrics=metrics,
        dataset_sha256=sha,
        checkpoint_path=best.path,
        run_name=run_name,
        history=history,
        step_losses=step_losses,
        resumed_from_step=resumed_from,
        worker_restarts=max(0, len(mine) - 1),
        timings_s={
            "prepare": round(t_prepared - t0, 3),
            "fit": round(t_fit - t_prepared, 3),
            "export_and_register": round(t_done - t_fit, 3),
            "total": round(t_done - t0, 3),
        },
    )


DRIFT_REFERENCE_ROWS = 5000


def _write_drift_reference(frame: Any, app: AppConfig, model_dir: Path, seed: int) -> None:
    """Log a seeded sample of the raw training features with the model: the drift monitor's
    reference for this version (what the router sends it is raw features too)."""
    from mlplat.experiment import DRIFT_REFERENCE_FILE

    names = [n for n in app.features.feature_names() if n in frame.columns]
    sample = frame[names]
    if len(sample) > DRIFT_REFERENCE_ROWS:
        sample = sample.sample(n=DRIFT_REFERENCE_ROWS, random_state=seed)
    sample.reset_index(drop=True).to_parquet(model_dir / DRIFT_REFERENCE_FILE, index=False)


def _refresh_catalog(cfg: PlatformConfig, model: str) -> None:
    """Index the new version in the model catalog now; a catalog failure never fails training
    (`mlplat catalog refresh` catches up)."""
    try:
        from mlplat.governance import refresh_catalog

        refresh_catalog(cfg, [model])
    except Exception as exc:  # the registered version stands; only its catalog entry lags
        logger.warning("catalog refresh after registering %s failed: %s", model, exc)


def run_progress(cfg: PlatformConfig, run_name: str) -> dict[str, Any] | None:
    """How far a run is: ``{"step", "total_steps", "loss"}`` from its step log, or None.

    None until rank 0 has started, and always for object-store roots (the step log is local).

    Example:
        >>> run_progress(cfg, "churn-20261126-1015")   # doctest: +SKIP
        {'step': 12, 'total_steps': 40, 'loss': 0.52}
    """
    storage = _storage(cfg)
    if "://" in storage:
        return None
    log = _loop.read_step_log(f"{storage}/{run_name}")
    totals = [s["total_steps"] for s in log["starts"] if s.get("total_steps")]
    if not totals:
        return None
    last = log["steps"][-1] if log["steps"] else {"step": 0, "loss": float("nan")}
    return {"step": int(last["step"]), "total_steps": int(totals[-1]), "loss": last["loss"]}
