"""``sweep()``: a Ray Tune hyperparameter search (Optuna + ASHA) under the team's quota.

Trials run on the training pool only (each asks for the pool's custom resource), at most
``trial_concurrency(cfg, team, cpus_per_trial)`` at a time — the team's
``max_concurrent_trials``, capped by what its CPU quota allows — so a 500-trial sweep can
neither exceed the team's quota nor touch serving capacity. Every trial becomes an MLflow
child run of the sweep's parent run (tag ``mlflow.parentRunId``), written from the driver;
the best trial is exported and registered as a model version through the experiment plane.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, UserError
from mlplat.training import _dataset, _loop

PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own tag for nested runs: the UI shows trials under their sweep."""
DEFAULT_SPACE: dict[str, tuple[str, list[float]]] = {
    "learning_rate": ("loguniform", [1e-3, 1e-1]),
    "hidden_units": ("choice", [8, 16, 32]),
}
"""Search space: field → (kind, args). Kinds: loguniform [lo, hi], uniform [lo, hi], choice."""


@dataclass
class SweepResult:
    """What one ``sweep()`` produced."""

    name: str
    parent_run_id: str
    trials: int
    max_concurrent_trials: int
    best_config: dict[str, Any]
    best_metrics: dict[str, float]
    model_name: str
    version: str
    run_id: str
    child_run_ids: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def trial_concurrency(
    cfg: PlatformConfig, team: str, cpus_per_trial: float, pool: str = "training-spot"
) -> int:
    """Trials ``team`` may run at once: ``max_concurrent_trials`` capped by its CPU quota.

    Raises:
        NotFoundError: unknown team or pool.
        UserError: the quota allows no trial at all.

    Example:
        >>> trial_concurrency(cfg, "risk", cpus_per_trial=8)   # 192 CPUs, 32 trials
        24
    """
    from mlplat.scheduling import team_quota

    quota = team_quota(cfg, team, pool)
    by_cpu = math.floor(quota.cpu / cpus_per_trial + 1e-9) if cpus_per_trial > 0 else 0
    n = min(quota.max_concurrent_trials, by_cpu)
    if n < 1:
        raise UserError(
            f"Team '{team}' may run no trial on '{pool}': max_concurrent_trials="
            f"{quota.max_concurrent_trials}, cpu={quota.cpu:g} and {cpus_per_trial:g} CPU per "
            f"trial (platform.yaml teams.{team}.quotas.{pool}). Lower --cpus-per-trial or "
            "raise the quota."
        )
    return n


def bounded_trial_reservations(max_cpus: float) -> Any:
    """A context manager under which Tune reserves at most ``max_cpus`` for trials at once.

    ``max_concurrent_trials`` bounds live *trials*, not reservations: when a trial ends Tune
    frees its slot at once but removes the trial's placement group only after the actor has
    stopped, and the next trial's group may be created in between — for a moment the team
    holds one trial more than its quota (seen in CI: 3 CPUs on a quota of 2). Under this
    context Tune's placement-group resource manager defers a new group until the ones it
    still holds (running, cached for reuse, or stopping) leave room for it. Tune builds its
    manager from a module-level name with no public hook (``TuneController`` takes a
    ``resource_manager_factory`` that ``Tuner`` never passes), so the name is swapped for the
    duration of the ``with`` block; sweeps run one per driver.

    Example:
        >>> with bounded_trial_reservations(2.0):
        ...     grid = tuner.fit()
    """
    from contextlib import contextmanager

    from ray.air.execution.resources.placement_group import PlacementGroupResourceManager
    from ray.tune.execution import tune_controller

    class QuotaBoundPlacementGroups(PlacementGroupResourceManager):  # type: ignore[misc]
        def __init__(self, update_interval_s: float = 0.1) -> None:
            self._deferred: list[Any] = []
            super().__init__(update_interval_s=update_interval_s)

        def _held_cpus(self) -> float:
            # Every group this manager created and has not removed: staged, ready, acquired.
            return sum(_request_cpus(r) for r in self._pg_to_request.values())

        def _admit(self) -> None:
            while self._deferred and (
                not self._pg_to_request
                or self._held_cpus() + _request_cpus(self._deferred[0]) <= max_cpus + 1e-9
            ):
                super().request_resources(self._deferred.pop(0))

        def request_resources(self, resource_request: Any) -> None:
            self._deferred.append(resource_request)
            self._admit()

        def cancel_resource_request(self, resource_request: Any) -> None:
            if resource_request in self._deferred:  # never created: nothing to remove
                self._deferred.remove(resource_request)
                return
            super().cancel_resource_request(resource_request)

        def update_state(self) -> None:
            self._admit()
            super().update_state()

        def free_resources(self, acquired_resource: Any) -> None:
            super().free_resources(acquired_resource)
            self._admit()

    @contextmanager
    def swapped() -> Any:
        original = tune_controller.PlacementGroupResourceManager
        tune_controller.PlacementGroupResourceManager = QuotaBoundPlacementGroups  # type: ignore[misc]
        try:
            yield
        finally:
            tune_controller.PlacementGroupResourceManager = original  # type: ignore[misc]

    return swapped()


def _request_cpus(resource_request: Any) -> float:
    return float(resource_request.required_resources.get("CPU", 0.0))


def _search_space(space: dict[str, tuple[str, list[float]]]) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for name, (kind, args) in space.items():
        if kind == "loguniform":
            out[name] = tune.loguniform(args[0], args[1])
        elif kind == "uniform":
            out[name] = tune.uniform(args[0], args[1])
        elif kind == "choice":
            out[name] = tune.choice(list(args))
        else:
            raise UserError(f"Search space '{name}': unknown kind '{kind}' (loguniform, "
                            "uniform, choice).")
    return out


def _trial(config: dict[str, Any], data: dict[str, Any], fixed: dict[str, Any]) -> None:
    """One trial (one process, ``cpus_per_trial`` CPUs): train, report every epoch."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(fixed["cpus_per_trial"])))
    seed = int(fixed["seed"])
    torch.manual_seed(seed)
    x, y = data["x_train"], data["y_train"]
    model = fixed["build_model"](int(fixed["input_width"]), int(config["hidden_units"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = int(fixed["batch_size"])
    n_batches = _loop.batches_per_epoch(len(x), 1, batch)
    min_step_s = float(fixed["min_step_s"])
    for epoch in range(int(fixed["epochs"])):
        shard = _loop.epoch_shard(len(x), 1, 0, seed, epoch)
        model.train()
        for b in range(n_batches):
            started = time.perf_counter()
            idx = shard[b * batch : (b + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
            loss.backward()
            opt.step()
            if min_step_s > 0:
                time.sleep(max(0.0, min_step_s - (time.perf_counter() - started)))
        model.eval()
        metrics = {"epoch": epoch + 1, **_loop.evaluate(model, data["x_val"], data["y_val"])}
        with tempfile.TemporaryDirectory(prefix="mlplat-trial-") as folder:
            torch.save(model.state_dict(), Path(folder) / _loop.STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


_TRACKERS: dict[str, Any] = {}
"""Open trackers by sweep name. Tune pickles its callbacks into the experiment state; the
tracker (locks, a database connection) cannot travel, so callbacks look it up by name."""


def _tracker_for(key: str) -> Any:
    return _TRACKERS[key]


def _mlflow_callback(key: str, experiment_id: str, parent: str, team: str) -> Any:
    """A Tune callback (runs on the driver: the one writer) logging each trial as a child."""
    from ray.tune import Callback

    class TrialRuns(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.runs: dict[str, str] = {}

        def _run(self, trial: Any) -> str:
            tracker = _tracker_for(key)
            if trial.trial_id not in self.runs:
                run = tracker.start_run(
                    experiment_id, f"trial-{trial.trial_id}",
                    {PARENT_TAG: parent, "team": team, "mlplat.trial_id": trial.trial_id},
                )
                tracker.log_params(run, {k: v for k, v in trial.config.items()})
                self.runs[trial.trial_id] = run
            return self.runs[trial.trial_id]

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            metrics = {k: float(result[k]) for k in ("val_loss", "val_auc", "val_accuracy")
                       if k in result and result[k] is not None}
            _tracker_for(key).log_metrics(self._run(trial), metrics,
                                          step=int(result.get("epoch", 0)))

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:
            _tracker_for(key).end_run(self._run(trial), "FINISHED")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            _tracker_for(key).end_run(self._run(trial), "FAILED")

    return TrialRuns()


def sweep(
    cfg: PlatformConfig,
    app: AppConfig,
    dataset: str,
    *,
    team: str | None = None,
    num_samples: int = 16,
    epochs: int | None = None,
    cpus_per_trial: float = 1.0,
    max_concurrent_trials: int | None = None,
    space: dict[str, tuple[str, list[float]]] | None = None,
    name: str | None = None,
    min_step_s: float = 0.0,
) -> SweepResult:
    """Search ``space`` for ``app`` with Optuna + ASHA; register the best trial's model.

    Args:
        cfg: Platform config (quotas, pools, tracking store).
        app: The app; its ``training`` section gives batch size, epochs, seed.
        dataset: Dataset folder written by the data plane, or its manifest.json.
        team: Team whose quota bounds the sweep (default: the app's team).
        num_samples: Trials in total.
        epochs: Epochs per trial (ASHA's max_t; default: the app's).
        cpus_per_trial: CPUs each trial holds on the training pool.
        max_concurrent_trials: Lower the concurrency below what the quota allows.
        space: Search space (default ``DEFAULT_SPACE``).
        name: Sweep name (MLflow parent run, Tune folder). Defaults to ``<app>-sweep-<time>``.
        min_step_s: Lower bound on seconds per optimizer step (drills, benchmarks).

    Returns:
        The parent run, the trials' child runs, the best config and its registered version.

    Raises:
        UserError: bad arguments, dataset or quota (before any cluster time).
        InfraError: every trial failed, or the tracking store is unavailable.

    Example:
        >>> r = sweep(cfg, load_app("fraud", cfg), ".mlplat/datasets/fraud", num_samples=8)
        >>> r.max_concurrent_trials, r.version
    """
    t0 = time.perf_counter()
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from mlplat.cluster import pool_resource
    from mlplat.experiment import ensure_experiment, log_training_run, open_tracker
    from mlplat.training._train import RUN_NAME_RE, _export, load_model_builder

    team = team or app.team
    tcfg = app.training
    epochs = epochs or tcfg.epochs
    if num_samples < 1 or epochs < 1 or cpus_per_trial <= 0:
        raise UserError(
            f"num_samples ({num_samples}), epochs ({epochs}) must be >= 1 and cpus_per_trial "
            f"({cpus_per_trial}) > 0."
        )
    concurrency = trial_concurrency(cfg, team, cpus_per_trial, tcfg.pool)
    if max_concurrent_trials is not None:
        concurrency = max(1, min(concurrency, max_concurrent_trials))
    name = name or f"{app.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if not RUN_NAME_RE.match(name):
        raise UserError(f"Invalid sweep name '{name}': letters, digits, '_', '.', '-' only.")
    search_space = _search_space(space or DEFAULT_SPACE)
    build_model = load_model_builder(app)
    data = _dataset.load_dataset(dataset, app.features)
    split = _dataset.prepare_split(data, tcfg.validation_fraction, tcfg.seed)
    width = split.preprocessor.width

    if not ray.is_initialized():
        ray.init()
    experiment_id = ensure_experiment(cfg, app.name, {"team": app.team})
    tracker = open_tracker(cfg, f"{app.name}-{name}")
    parent = tracker.start_run(experiment_id, name, {"team": team, "app": app.name,
                                                     "mlplat.kind": "sweep"})
    tracker.log_params(parent, {"num_samples": num_samples, "epochs": epochs,
                                "cpus_per_trial": cpus_per_trial,
                                "max_concurrent_trials": concurrency,
                                "dataset_sha256": data.manifest.content_sha256})
    parent_id = tracker.server_run_id(parent, timeout_s=60)
    if not parent_id:
        raise InfraError(f"The tracking store did not create the sweep's parent run '{name}'.")
    _TRACKERS[name] = tracker
    callback = _mlflow_callback(name, experiment_id, parent_id, team)
    fixed = {
        "build_model": build_model, "input_width": width, "batch_size": tcfg.batch_size,
        "epochs": epochs, "seed": tcfg.seed, "cpus_per_trial": cpus_per_trial,
        "min_step_s": min_step_s,
    }
    arrays = {"x_train": split.x_train, "y_train": split.y_train,
              "x_val": split.x_val, "y_val": split.y_val}
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=arrays, fixed=fixed),
        # The pool's custom resource keeps every trial on training nodes, never on serving.
        {"CPU": cpus_per_trial, pool_resource(tcfg.pool): cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space,
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=num_samples,
            max_concurrent_trials=concurrency,
            # A finished trial's actor runs the next trial: no process start per trial
            # (20 one-second trials: 4.4x the minimum without, 1.65x with; bench_training).
            reuse_actors=True,
            search_alg=OptunaSearch(seed=tcfg.seed),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=2,
                                    time_attr="epoch"),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=f"{cfg.root()}/sweeps",
            callbacks=[callback],
            verbose=0,
        ),
    )
    t_prepared = time.perf_counter()
    try:
        with bounded_trial_reservations(concurrency * cpus_per_trial):
            grid = tuner.fit()
    finally:
        _TRACKERS.pop(name, None)
    t_fit = time.perf_counter()
    results = [grid[i] for i in range(len(grid))]
    ok = [r for r in results if r.error is None and r.checkpoint is not None]
    if not ok:
        tracker.end_run(parent, "FAILED")
        tracker.close()
        raise InfraError(f"Every trial of sweep '{name}' failed; first error: "
                         f"{next((r.error for r in results if r.error), None)}")
    best = grid.get_best_result(metric="val_loss", mode="min", scope="all")
    best_config: dict[str, Any] = dict(best.config or {})
    import torch

    module = build_model(width, int(best_config["hidden_units"]))
    checkpoint = best.get_best_checkpoint(metric="val_loss", mode="min") or best.checkpoint
    if checkpoint is None:
        raise InfraError(f"The best trial of sweep '{name}' left no checkpoint.")
    with checkpoint.as_directory() as folder:
        module.load_state_dict(torch.load(Path(folder) / _loop.STATE_FILE, weights_only=True))
    module.eval()
    metrics = _loop.evaluate(module, split.x_val, split.y_val)
    if np.isnan(metrics["val_auc"]):
        raise UserError("val_auc is undefined: the validation split has a single class.")
    tracker.log_metrics(parent, {f"best_{k}": v for k, v in metrics.items()})
    with tempfile.TemporaryDirectory(prefix="mlplat-sweep-model-") as tmp:
        model_dir = Path(tmp)
        _export(module, width, model_dir / "model.pt")
        (model_dir / "preprocessor.json").write_text(split.preprocessor.model_dump_json())
        params = {**tcfg.model_dump(), **best_config, "epochs": epochs, "sweep": name,
                  "dataset_sha256": data.manifest.content_sha256, "input_width": width}
        logged = log_training_run(
            cfg, app, model_dir=model_dir, params=params, history=[], metrics=metrics,
            dataset_sha256=data.manifest.content_sha256,
            feature_spec=data.manifest.feature_spec, run_name=f"{name}-best",
        )
    best_run = tracker.attach_run(logged.run_id)
    tracker.set_tags(best_run, {PARENT_TAG: parent_id, "mlplat.best_trial": "true"})
    tracker.end_run(parent, "FINISHED")
    if not tracker.flush(120):
        raise InfraError(f"Sweep '{name}' finished but its MLflow writes are still buffered in "
                         f"{tracker.buffer_path}; they replay when the store is back.")
    child_ids = [tracker.server_run_id(r) or "" for r in callback.runs.values()]
    tracker.close()
    t_done = time.perf_counter()
    return SweepResult(
        name=name,
        parent_run_id=parent_id,
        trials=len(results),
        max_concurrent_trials=concurrency,
        best_config={k: best_config[k] for k in search_space if k in best_config},
        best_metrics=metrics,
        model_name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        child_run_ids=child_ids,
        timings_s={"prepare": round(t_prepared - t0, 3), "fit": round(t_fit - t_prepared, 3),
                   "register": round(t_done - t_fit, 3), "total": round(t_done - t0, 3)},
    )


def sweep_progress(cfg: PlatformConfig, name: str) -> dict[str, Any] | None:
    """What a running sweep has reported so far, from Tune's per-trial ``result.json`` files:
    ``{"trials", "reports", "best_val_loss"}``; None before the first report and for
    object-store roots.

    Example:
        >>> sweep_progress(cfg, "churn-sweep-20261126-1015")   # doctest: +SKIP
        {'trials': 2, 'reports': 3, 'best_val_loss': 0.41}
    """
    import json
    from pathlib import Path

    root = f"{cfg.root()}/sweeps/{name}"
    if "://" in root or not Path(root).is_dir():
        return None
    trials, reports, best = 0, 0, float("inf")
    for result in Path(root).glob("*/result.json"):
        lines = [ln for ln in result.read_text().splitlines() if ln.strip()]
        trials += bool(lines)
        for line in lines:
            try:
                loss = float(json.loads(line).get("val_loss", "inf"))
            except (ValueError, TypeError):
                continue  # a line being written
            reports += 1
            best = min(best, loss)
    if not reports:
        return None
    return {"trials": trials, "reports": reports, "best_val_loss": best}
