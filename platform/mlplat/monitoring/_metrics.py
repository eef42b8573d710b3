"""Platform metrics, exported twice: Ray metrics (Ray dashboard, ``ray_<name>`` on each node's
metrics port) and a Prometheus ``/metrics`` endpoint served by the actor itself.

``METRIC_NAMES`` is the one list of what the platform exports; the Grafana dashboard and the
Prometheus rules in cluster/monitoring/ may only use these names (a unit test checks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricDef:
    kind: str  # "gauge" | "counter"
    description: str
    tags: tuple[str, ...]


_MV = ("model", "version")
METRIC_NAMES: dict[str, MetricDef] = {
    # drift monitor
    "mlplat_drift_feature_score": MetricDef("gauge", "Drift score of one feature in the last closed window (p-value or distance, see the report's method).", (*_MV, "feature")),
    "mlplat_drift_feature_drifted": MetricDef("gauge", "1 when the feature drifted in the last closed window, else 0.", (*_MV, "feature")),
    "mlplat_drift_feature_psi": MetricDef("gauge", "Population stability index of a numeric feature in the last closed window.", (*_MV, "feature")),
    "mlplat_drift_share_drifted": MetricDef("gauge", "Share of features that drifted in the last closed window.", _MV),
    "mlplat_drift_severity": MetricDef("gauge", "Drift severity of the last closed window: 0 none, 1 warning, 2 critical (monitoring.drift_share_*).", _MV),
    "mlplat_drift_prediction_drifted": MetricDef("gauge", "1 when the model's scores drifted in the last closed window.", _MV),
    "mlplat_drift_window_rows": MetricDef("gauge", "Rows in the last closed window.", _MV),
    "mlplat_drift_window_lag_seconds": MetricDef("gauge", "Seconds from a window's scheduled end to its report being published.", _MV),
    "mlplat_drift_last_report_timestamp_seconds": MetricDef("gauge", "Unix time of the last published drift report.", _MV),
    "mlplat_drift_dropped_rows": MetricDef("counter", "Sampled rows dropped because the window buffer was full.", _MV),
    "mlplat_drift_reports": MetricDef("counter", "Drift reports published, by severity.", (*_MV, "severity")),
    "mlplat_kpi_fraud_caught_usd": MetricDef("gauge", "Value of positive outcomes acted on, per model version (outcomes so far).", _MV),
    "mlplat_kpi_false_positive_cost_usd": MetricDef("gauge", "Review cost of legitimate cases acted on, per model version.", _MV),
    "mlplat_kpi_recall": MetricDef("gauge", "Recall of the latest window with outcomes.", _MV),
    "mlplat_kpi_performance_drop": MetricDef("gauge", "Recall of the version's first window with outcomes minus its latest.", _MV),
    "mlplat_kpi_drift_correlation": MetricDef("gauge", "Correlation of drift share with the window-to-window KPI change.", ("model",)),
    "mlplat_retrain_jobs_submitted": MetricDef("counter", "Retraining jobs submitted on critical drift.", ("model", "team")),
    "mlplat_model_info": MetricDef("gauge", "1 per monitored model, labelled with the team that owns it (alert routing).", ("model", "team")),
    "mlplat_alerts_posted": MetricDef("counter", "Alerts posted straight to Alertmanager.", ("alertname", "severity")),
    # cost meter
    "mlplat_cost_usd": MetricDef("gauge", "Spend attributed to a team and model since the meter's store began.", ("team", "model")),
    "mlplat_cost_kind_usd": MetricDef("gauge", "Spend by team, model and kind (job, trial, replica).", ("team", "model", "kind")),
    "mlplat_cost_pool_usd": MetricDef("gauge", "Spend by node pool and capacity (spot, on-demand).", ("pool", "capacity")),
    "mlplat_cost_team_week_usd": MetricDef("gauge", "Spend of a team over the last 7 days.", ("team",)),
    "mlplat_cost_team_budget_usd": MetricDef("gauge", "A team's weekly budget (teams[*].budget_usd_per_week).", ("team",)),
    "mlplat_cost_per_inference_usd": MetricDef("gauge", "Serving (replica) spend per recorded inference.", ("model",)),
    "mlplat_cost_per_1k_tokens_usd": MetricDef("gauge", "LLM serving (replica) spend per 1,000 generated tokens.", ("model",)),
    "mlplat_cost_resource_seconds": MetricDef("gauge", "Resource-seconds attributed (cpu, gpu, memory_gib).", ("team", "model", "resource")),
}


def exported_names() -> set[str]:
    """Every series name a scrape can show: ``name`` (``_total`` for counters) from the
    Prometheus endpoint and ``ray_name`` (same rule) from Ray's metrics endpoint."""
    out: set[str] = set()
    for name, d in METRIC_NAMES.items():
        base = f"{name}_total" if d.kind == "counter" else name
        out |= {base, f"ray_{base}"}
    return out


class Metrics:
    """One process's view of ``METRIC_NAMES``: each ``set``/``inc`` updates the Ray metric and
    the Prometheus one (a private registry, served on ``port`` by ``serve``).

    Example:
        >>> m = Metrics(["mlplat_drift_share_drifted"])
        >>> m.set("mlplat_drift_share_drifted", 0.5, model="fraud", version="3")
        >>> m.serve(9464)
    """

    def __init__(self, names: list[str], ray_metrics: bool = True) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client import Counter as PCounter
        from prometheus_client import Gauge as PGauge

        self.registry = CollectorRegistry()
        self._prom: dict[str, Any] = {}
        self._ray: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.port: int | None = None
        self.serve_error = ""
        for name in names:
            d = METRIC_NAMES[name]
            cls = PCounter if d.kind == "counter" else PGauge
            self._prom[name] = cls(name, d.description, list(d.tags), registry=self.registry)
        if ray_metrics:
            from ray.util.metrics import Counter, Gauge

            for name in names:
                d = METRIC_NAMES[name]
                rcls = Counter if d.kind == "counter" else Gauge
                self._ray[name] = rcls(name, description=d.description, tag_keys=d.tags)

    def set(self, name: str, value: float, **tags: str) -> None:
        with self._lock:
            self._prom[name].labels(**tags).set(value)
            if name in self._ray:
                self._ray[name].set(value, tags=tags)

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        if value <= 0:
            return
        with self._lock:
            self._prom[name].labels(**tags).inc(value)
            if name in self._ray:
                self._ray[name].inc(value, tags=tags)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int | None:
        """Serve ``/metrics`` on ``port`` (0 = off). A busy port is reported, not raised: the
        Ray metrics keep flowing and ``serve_error`` says why the endpoint is missing."""
        if not port:
            return None
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            self.serve_error = f"cannot serve /metrics on {addr}:{port}: {exc}"
            return None
        self.port = port
        return port

    def text(self) -> str:
        """The Prometheus exposition text (what a scrape of ``/metrics`` returns)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
