"""Closed loop: critical drift submits a retraining job, at most one per cooldown.

One drift episode (critical windows in a row) submits one ``jobs/train.py`` job through Ray's
``JobSubmissionClient``, with mlplat job metadata (team, model, pool, cpus — so the cost meter
charges it) plus ``trigger=drift``. Another critical window within
``monitoring_timing.retrain_cooldown_s`` of the last submission submits nothing. The last
submission per model is kept in the drift store (it survives an actor restart) and every
submission, refused or failed, is appended to the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplat.cluster import DRIFT_MONITOR_ACTOR
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import DriftReport
from mlplat.errors import InfraError, MlplatError
from mlplat.monitoring._store import DriftStore

"""Audit actor of automatic retraining."""
TRAIN_SCRIPT = "jobs/train.py"


@dataclass(frozen=True)
class RetrainTarget:
    """What to run when ``model`` drifts: the app, dataset and extra ``jobs/train.py`` args."""

    model: str
    app: str
    team: str
    dataset: str
    pool: str
    cpus: float
    args: list[str] = field(default_factory=list)

    def entrypoint_args(self, run_name: str) -> list[str]:
        # --alias staging: the new version enters the promotion pipeline (the controller
        # watches the registry's staging alias).
        return ["--app", self.app, "--dataset", self.dataset, "--run-name", run_name,
                "--alias", "staging", *self.args]


Submitter = Callable[[RetrainTarget, list[str], dict[str, str]], str]
"""``(target, train.py args, metadata) -> job id``."""


def ray_job_submitter(cfg: PlatformConfig, dashboard_url: str) -> Submitter:
    """Submit ``python jobs/train.py …`` with Ray's ``JobSubmissionClient`` (working dir = the
    repository, driver on the head pool, ``MLPLAT_HOME`` passed on)."""

    def submit(target: RetrainTarget, args: list[str], metadata: dict[str, str]) -> str:
        from ray.job_submission import JobSubmissionClient

        from mlplat.jobs import ray_job_spec, submit_with_retry

        try:
            client = JobSubmissionClient(dashboard_url)
        except Exception as exc:  # the SDK raises bare ConnectionError/RuntimeError
            raise InfraError(f"Cannot reach the Ray job API at {dashboard_url}: {exc}") from exc
        # The same spec as every platform job: the checkout holding jobs/train.py as working
        # dir, MLPLAT_HOME (and MLPLAT_CONFIG for a platform.yaml outside it) passed on.
        spec = ray_job_spec(cfg, TRAIN_SCRIPT, args, team=target.team, model=target.model,
                            pool=target.pool, cpus=target.cpus, extra_metadata=metadata)
        return submit_with_retry(client, **spec)

    return submit


class RetrainPolicy:
    """Decides, submits, remembers and audits drift-triggered retraining.

    Args:
        cfg: Platform config (cooldown, teams, pools, apps).
        store: The drift store (last submission per model, retrain targets).
        submit: Submits a job and returns its id (``ray_job_submitter`` in the actor).
        audit: ``AuditLog.append``-compatible callable; None audits nothing (unit tests).
        clock: Seconds since the epoch.

    Example:
        >>> policy = RetrainPolicy(cfg, store, ray_job_submitter(cfg, url), AuditLog(cfg).append)
        >>> policy.on_report(critical_report)
        'raysubmit_…'
        >>> policy.on_report(critical_report) is None  # same episode, within the cooldown
        True
    """

    def __init__(self, cfg: PlatformConfig, store: DriftStore, submit: Submitter,
                 audit: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg
        self._store = store
        self._submit = submit
        self._audit = audit
        self._clock = clock
        self.cooldown_s = cfg.active_profile().monitoring_timing.retrain_cooldown_s
        self.last_error = ""

    def set_target(self, model: str, *, app: str | None = None, dataset: str | None = None,
                   team: str | None = None, pool: str | None = None, cpus: float | None = None,
                   args: list[str] | None = None) -> RetrainTarget:
        """Say what retraining ``model`` means; the defaults come from the app (team, training
        pool, workers × CPUs) and the newest dataset built for it (``<root>/datasets/<app>/``).

        Raises:
            NotFoundError: unknown app, team or pool.
        """
        target = self._resolve(model, {"app": app, "dataset": dataset, "team": team,
                                       "pool": pool, "cpus": cpus, "args": args})
        # Without an explicit dataset, store none: "the newest one" is decided at submission.
        self._store.set_retrain_target(model, {**target.__dict__, "dataset": dataset or ""})
        return target

    def _resolve(self, model: str, given: dict[str, Any]) -> RetrainTarget:
        from mlplat.apps import load_app

        given = {k: v for k, v in given.items() if v is not None}
        app_name = given.get("app", model)
        team, pool, cpus = given.get("team"), given.get("pool"), given.get("cpus")
        if team is None or pool is None or cpus is None:
            app = load_app(app_name, self._cfg)
            team = team or app.team
            pool = pool or app.training.pool
            cpus = cpus if cpus is not None else app.training.num_workers * app.training.cpus_per_worker
        self._cfg.team(team)
        self._cfg.pool(pool)
        # Not given: the newest dataset built for the app, decided again at each submission.
        dataset = given.get("dataset") or self._newest_dataset(model, app_name)
        return RetrainTarget(model=model, app=app_name, team=team, dataset=dataset, pool=pool,
                             cpus=float(cpus), args=list(given.get("args", [])))

    def target(self, model: str) -> RetrainTarget:
        stored = self._store.retrain_target(model)
        if stored is not None:
            if not stored.get("dataset"):
                stored = {**stored, "dataset": self._newest_dataset(model, stored["app"])}
            return RetrainTarget(**stored)
        return self._resolve(model, {})

    def _newest_dataset(self, model: str, app: str) -> str:
        from mlplat.data import latest_dataset

        return latest_dataset(self._cfg, Path(app).name) or f"{self._cfg.root()}/datasets/{model}"

    def team_of(self, model: str) -> str | None:
        """The team that owns ``model`` (its retrain target or app), or None if unknown."""
        try:
            return self.target(model).team
        except MlplatError:
            return None

    def on_report(self, report: DriftReport) -> str | None:
        """Submit a retraining job if ``report`` is critical and the model is out of cooldown.

        Returns:
            The submitted job id, or None (not critical, in cooldown, or submission failed —
            ``last_error`` says why and the failure is audited).
        """
        model = report.model
        state = self._store.retrain_state(model)
        now = self._clock()
        if report.severity != "critical":
            if state is not None and state[3]:
                self._store.set_retrain_state(model, state[0], state[1], state[2], False)
            return None
        if state is not None and now - state[0] < self.cooldown_s:
            if not state[3]:
                self._store.set_retrain_state(model, state[0], state[1], state[2], True)
            return None
        target_label = f"model:{model}/{report.version}"
        details = {"share_drifted": report.share_drifted,
                   "window_end": report.window_end.isoformat(),
                   "cooldown_s": self.cooldown_s}
        try:
            target = self.target(model)
            run_name = f"retrain-{model}-{int(now)}"
            metadata = {"team": target.team, "model": model, "pool": target.pool,
                        "cpus": f"{target.cpus:g}", "kind": "job", "trigger": "drift",
                        "drifted_version": report.version}
            job_id = self._submit(target, target.entrypoint_args(run_name), metadata)
        except (MlplatError, RuntimeError, OSError) as exc:
            self.last_error = str(exc)
            if self._audit is not None:
                self._audit(DRIFT_MONITOR_ACTOR, "monitoring.retrain", target_label,
                            reason="critical drift", details={**details, "error": str(exc)[:500]},
                            outcome="failed")
            return None
        self._store.set_retrain_state(model, now, job_id, report.version, True)
        self.last_error = ""
        if self._audit is not None:
            self._audit(DRIFT_MONITOR_ACTOR, "monitoring.retrain", target_label,
                        reason=f"critical drift: {report.share_drifted:.0%} of features drifted",
                        details={**details, "job_id": job_id, "team": target.team,
                                 "dataset": target.dataset})
        return job_id

    def state(self, model: str) -> dict[str, Any] | None:
        s = self._store.retrain_state(model)
        if s is None:
            return None
        return {"submitted_at": s[0], "job_id": s[1], "version": s[2], "episode_open": s[3],
                "cooldown_s": self.cooldown_s}
