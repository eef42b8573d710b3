"""The ``mlplat-drift-monitor`` actor: a thin Ray shell over ``DriftMonitor``.

Detached, named and restartable (``max_restarts=-1``), holding no CPU, on the ``cpu`` pool. Its
state lives in a SQLite store under the local root, so a restart loses nothing that was
acknowledged. A closer thread closes each tumbling window (``monitoring_timing.drift_window_s``)
and publishes it within seconds: metrics (Ray + its own Prometheus endpoint), a direct
Alertmanager alert on critical drift, the retrain policy, then the full Evidently report.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.cluster import (
    DRIFT_MONITOR_ACTOR,
    PLATFORM_NAMESPACE,
    node_info,
    platform_actor,
    survives_restart,
)
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import DriftReport
from mlplat.errors import MlplatError, UserError
from mlplat.monitoring._alerts import alertmanager_url, post_alert
from mlplat.monitoring._drift import (
    DEFAULT_MIN_ROWS,
    ClosedWindow,
    DriftMonitor,
    DriftMonitorStats,
)
from mlplat.monitoring._evidently import write_evidently_report
from mlplat.monitoring._kpi import KpiReport, kpi_report
from mlplat.monitoring._metrics import METRIC_NAMES, Metrics
from mlplat.monitoring._retrain import RetrainPolicy, ray_job_submitter
from mlplat.monitoring._store import DriftStore

if TYPE_CHECKING:
    from ray.actor import ActorHandle

NAMESPACE = PLATFORM_NAMESPACE
_MAX_CONCURRENCY = 4
"""Threads in the actor: record() calls keep being served while a report computes."""
_SEVERITY = {"none": 0.0, "warning": 1.0, "critical": 2.0}
_log = logging.getLogger(__name__)


def _warm_up_evidently() -> None:
    import evidently.presets  # noqa: F401


class DriftMonitorActor:
    """Ray actor wrapping ``DriftMonitor``; same methods, plus publishing of each report."""

    def __init__(self, cfg: PlatformConfig, name: str, max_buffer_rows: int | None,
                 metrics_port: int | None, dashboard_url: str | None,
                 min_rows: int = DEFAULT_MIN_ROWS, alertmanager: str | None = None,
                 retrain: bool = True) -> None:
        from mlplat.audit import AuditLog

        threading.Thread(target=_warm_up_evidently, name="evidently-import", daemon=True).start()
        self._cfg = cfg
        self._min_rows = min_rows
        self._alertmanager = alertmanager
        self._retrain_enabled = retrain
        kwargs: dict[str, Any] = {}
        if max_buffer_rows is not None:
            kwargs["max_buffer_rows"] = max_buffer_rows
        root = Path(cfg.root())
        timing = cfg.active_profile().monitoring_timing
        self._monitor = DriftMonitor(
            policy=cfg.monitoring, window_s=timing.drift_window_s,
            gate_lookback_s=timing.drift_gate_lookback_s,
            store=DriftStore(cfg.local_path(f"monitoring/{name}.db")),
            report_dir=root / "monitoring" / "reports" / name, **kwargs)
        self._retrain = RetrainPolicy(
            cfg, self._monitor.store,
            ray_job_submitter(cfg, dashboard_url or "http://127.0.0.1:8265"),
            AuditLog(cfg).append)
        self._metrics = Metrics([n for n in METRIC_NAMES if not n.startswith("mlplat_cost_")])
        port = cfg.monitoring.drift_metrics_port if metrics_port is None else metrics_port
        self._metrics.serve(port)
        self._errors: dict[str, str] = {}
        self._reference_retry: dict[tuple[str, str], float] = {}
        self._alerts_posted: list[dict[str, Any]] = []
        self._evidently: queue.Queue[ClosedWindow] = queue.Queue(maxsize=8)
        self._publish_lock = threading.Lock()
        threading.Thread(target=self._closer, name="drift-window-closer", daemon=True).start()
        threading.Thread(target=self._evidently_writer, name="evidently-writer",
                         daemon=True).start()

    # ---------------------------------------------------------------- background threads

    def _closer(self) -> None:
        period = min(1.0, (self._monitor.window_s or 5.0) / 5)
        while True:
            time.sleep(period)
            try:
                for closed in self._monitor.tick(self._min_rows):
                    self._publish(closed)
            except Exception as exc:  # keep closing windows whatever one report did
                self._errors["closer"] = repr(exc)
                _log.exception("drift window closer failed")

    def _evidently_writer(self) -> None:
        while True:
            closed = self._evidently.get()
            try:
                write_evidently_report(closed)
            except Exception as exc:  # a report for people must not stop the monitor
                self._errors["evidently"] = repr(exc)

    def _publish(self, closed: ClosedWindow) -> None:
        report = closed.report
        tags = {"model": report.model, "version": report.version}
        m = self._metrics
        with self._publish_lock:
            for feature, f in report.features.items():
                m.set("mlplat_drift_feature_score", f.score, **tags, feature=feature)
                m.set("mlplat_drift_feature_drifted", float(f.drifted), **tags, feature=feature)
                if f.psi is not None:
                    m.set("mlplat_drift_feature_psi", f.psi, **tags, feature=feature)
            m.set("mlplat_drift_share_drifted", report.share_drifted, **tags)
            m.set("mlplat_drift_severity", _SEVERITY.get(report.severity, 0.0), **tags)
            if report.prediction_drift is not None:
                m.set("mlplat_drift_prediction_drifted", float(report.prediction_drift.drifted),
                      **tags)
            m.set("mlplat_drift_window_rows", float(report.current_rows), **tags)
            now = time.time()
            m.set("mlplat_drift_window_lag_seconds", max(0.0, now - closed.scheduled_end), **tags)
            m.set("mlplat_drift_last_report_timestamp_seconds", now, **tags)
            m.inc("mlplat_drift_reports", 1.0, **tags, severity=report.severity)
        team = self._retrain.team_of(report.model)
        if team is not None:
            m.set("mlplat_model_info", 1.0, model=report.model, team=team)
        url = self._alertmanager or alertmanager_url(self._cfg)
        if report.severity == "critical" and team is not None and url:
            drifted = sorted(n for n, f in report.features.items() if f.drifted)
            try:
                self._alerts_posted.append(post_alert(
                    self._cfg, "ModelDriftCritical", "critical", team, tags,
                    {"summary": f"{report.model} v{report.version}: {report.share_drifted:.0%} "
                                f"of features drifted",
                     "description": f"Drifted: {', '.join(drifted)}. Window "
                                    f"{report.window_start.isoformat()} – "
                                    f"{report.window_end.isoformat()}.",
                     "report": report.evidently_report or ""}, url=url))
                m.inc("mlplat_alerts_posted", alertname="ModelDriftCritical", severity="critical")
                self._errors.pop("alert", None)
            except MlplatError as exc:
                self._errors["alert"] = str(exc)
        job = self._retrain.on_report(report) if self._retrain_enabled else None
        if job is not None:
            m.inc("mlplat_retrain_jobs_submitted", model=report.model, team=team or "")
        if self._retrain.last_error:
            self._errors["retrain"] = self._retrain.last_error
        self._publish_kpi(report.model)
        try:
            self._evidently.put_nowait(closed)
        except queue.Full:
            self._errors["evidently"] = "report queue full; skipped one full Evidently report"

    def _publish_kpi(self, model: str) -> None:
        kpi = kpi_report(self._monitor.store, model, self._cfg.monitoring)
        for version, v in kpi.by_version.items():
            tags = {"model": model, "version": version}
            self._metrics.set("mlplat_kpi_fraud_caught_usd", v["fraud_caught_usd"] or 0.0, **tags)
            self._metrics.set("mlplat_kpi_false_positive_cost_usd",
                              v["false_positive_cost_usd"] or 0.0, **tags)
        for w in kpi.windows[-1:]:
            if w.recall is not None:
                self._metrics.set("mlplat_kpi_recall", w.recall, model=model, version=w.version)
        for version, drop in kpi.performance_drop.items():
            self._metrics.set("mlplat_kpi_performance_drop", drop, model=model, version=version)
        if kpi.drift_kpi_correlation is not None:
            self._metrics.set("mlplat_kpi_drift_correlation", kpi.drift_kpi_correlation, model=model)

    # ---------------------------------------------------------------- the API

    @survives_restart
    def ping(self) -> dict[str, str]:
        """Liveness plus where the actor runs (its node and that node's pool label)."""
        return {**node_info(), "metrics_port": str(self._metrics.port or "")}

    @survives_restart
    def set_reference(
        self, model: str, version: str | int, rows: list[dict[str, Any]],
        features: list[str] | None = None, scores: list[float] | None = None,
    ) -> int:
        return self._monitor.set_reference(model, version, rows, features, scores)

    def record(
        self, model: str, version: str | int, rows: list[dict[str, Any]], scores: list[float],
        ids: list[str] | None = None,
    ) -> int:
        self._ensure_reference(model, str(version))
        accepted = self._monitor.record(model, version, rows, scores, ids)
        if accepted < len(rows):
            self._metrics.inc("mlplat_drift_dropped_rows", len(rows) - accepted, model=model,
                              version=str(version))
        return accepted

    def _ensure_reference(self, model: str, version: str) -> None:
        """A version seen for the first time gets the reference stored with it at registration
        (``drift_reference.parquet`` among its model files); retried at most every 30 s."""
        if self._monitor.has_reference(model, version):
            return
        now = time.monotonic()
        if now < self._reference_retry.get((model, version), 0.0):
            return
        self._reference_retry[(model, version)] = now + 30.0
        try:
            rows = registered_reference(self._cfg, model, version)
        except Exception as exc:  # not registered here, registry down: the window waits
            self._errors["reference"] = f"{model}/{version}: {type(exc).__name__}: {exc}"
            return
        if rows:
            self._monitor.set_reference(model, version, rows)

    @survives_restart
    def served_drift(self, model: str, candidate: str) -> DriftReport | None:
        """Recently served traffic vs the training sample registered with ``candidate`` (the
        promotion drift gate); None when there is no served data or no sample to compare."""
        rows = registered_reference(self._cfg, model, candidate)
        return self._monitor.served_drift(model, rows or [], self._min_rows)

    def record_outcomes(self, model: str, outcomes: list[dict[str, Any]]) -> int:
        return self._monitor.record_outcomes(model, outcomes)

    def report(
        self, model: str, version: str | int, min_rows: int = DEFAULT_MIN_ROWS
    ) -> DriftReport:
        """Close the current window now and publish it; if the window is too small because the
        closer just reported on it, return that (latest) report instead."""
        try:
            closed = self._monitor.close(model, version, min_rows)
        except UserError:
            latest = self._monitor.latest_report(model, version)
            if latest is None:
                raise
            return latest
        self._publish(closed)
        return closed.report

    @survives_restart
    def latest_report(self, model: str, version: str | int) -> DriftReport | None:
        return self._monitor.latest_report(model, version)

    @survives_restart
    def kpi(self, model: str) -> KpiReport:
        return kpi_report(self._monitor.store, model, self._cfg.monitoring)

    def set_retrain_target(self, model: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self._retrain.set_target(model, **kwargs).__dict__)

    @survives_restart
    def retrain_state(self, model: str) -> dict[str, Any] | None:
        return self._retrain.state(model)

    @survives_restart
    def errors(self) -> dict[str, str]:
        """The last error of each background duty (closer, alert, retrain, evidently, exporter)."""
        out = dict(self._errors)
        if self._metrics.serve_error:
            out["exporter"] = self._metrics.serve_error
        return out

    @survives_restart
    def alerts_posted(self) -> list[dict[str, Any]]:
        return list(self._alerts_posted)

    @survives_restart
    def metrics_text(self) -> str:
        return self._metrics.text()

    @survives_restart
    def stats(self) -> DriftMonitorStats:
        return self._monitor.stats()


def registered_reference(cfg: PlatformConfig, model: str,
                         version: str) -> list[dict[str, Any]] | None:
    """The training-data sample stored with a registered version (None: it has none).

    Example:
        >>> rows = registered_reference(cfg, "fraud", "3")   # doctest: +SKIP
    """
    import pandas as pd

    from mlplat.experiment import DRIFT_REFERENCE_FILE, version_folder

    path = version_folder(cfg, model, version) / DRIFT_REFERENCE_FILE
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")  # type: ignore[no-any-return]


def get_drift_monitor(
    cfg: PlatformConfig,
    *,
    name: str = DRIFT_MONITOR_ACTOR,
    max_buffer_rows: int | None = None,
    metrics_port: int | None = None,
    dashboard_url: str | None = None,
    min_rows: int | None = None,
    alertmanager: str | None = None,
    retrain: bool = True,
) -> ActorHandle:
    """Get the drift-monitor actor, creating it on the ``cpu`` pool if it does not exist.

    The caller must already be connected to Ray (``ray.init(address=...)``). The actor is
    detached and restarted by Ray if it dies; it rebuilds its references, open windows and
    reports from ``<root>/monitoring/<name>.db``.

    Args:
        cfg: Platform config (pool, thresholds, window length, ports).
        name: Actor name; tests pass their own to stay apart from the platform's actor (each
            name has its own store).
        max_buffer_rows: Buffer bound per model version and window (creation only).
        metrics_port: Prometheus ``/metrics`` port (creation only); defaults to
            ``monitoring.drift_metrics_port``, 0 turns the endpoint off.
        dashboard_url: Ray job API for retraining jobs (creation only); defaults to the local
            cluster's dashboard from platform.yaml (or an http ``$RAY_ADDRESS``).
        min_rows: Fewest rows a tumbling window is reported on (creation only); default
            ``monitoring.min_window_rows`` from platform.yaml.
        alertmanager: Alertmanager URL for direct critical-drift alerts (creation only);
            defaults to ``alertmanager_url(cfg)`` at each alert.
        retrain: Submit retraining on critical drift (creation only).

    Returns:
        The actor handle; call ``record.remote(...)`` fire-and-forget from the request path,
        ``ray.get(h.report.remote(model, version))`` from jobs.

    Raises:
        InfraError: this process is not connected to a Ray cluster.

    Example:
        >>> mon = get_drift_monitor(cfg)
        >>> mon.record.remote("fraud", "2", rows, scores)  # fire-and-forget
        >>> ray.get(mon.report.remote("fraud", "2")).dataset_drift
        False
    """
    from mlplat.jobs import dashboard_url as default_dashboard_url

    return platform_actor(cfg, DriftMonitorActor, name, cfg, name, max_buffer_rows, metrics_port,
                          dashboard_url or default_dashboard_url(cfg),
                          cfg.monitoring.min_window_rows if min_rows is None else min_rows,
                          alertmanager,
                          retrain, max_concurrency=_MAX_CONCURRENCY)
