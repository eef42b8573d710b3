"""The ``mlplat-cost-meter`` actor: a thin Ray shell over ``CostMeter``.

Detached, named and restartable, holding no CPU, on the ``cpu`` pool, its usage in a SQLite
store under the local root. Every ``monitoring_timing.cost_sample_s`` a sampler thread reads
Ray's job list and state API (tasks, actors, nodes → pools), charges what it sees, exports the
cost metrics (Ray + its own Prometheus endpoint) and alerts a team whose weekly budget is
crossed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlplat.cluster import (
    COST_METER_ACTOR,
    PLATFORM_NAMESPACE,
    node_info,
    platform_actor,
    survives_restart,
)
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import CostRecord
from mlplat.errors import InfraError, MlplatError
from mlplat.governance._cost import CostMeter, CostReport, CostStore, UsageKind

if TYPE_CHECKING:
    from ray.actor import ActorHandle

NAMESPACE = PLATFORM_NAMESPACE
_STATE_LIMIT = 10_000
_log = logging.getLogger(__name__)


class CostMeterActor:
    """Ray actor wrapping ``CostMeter``; same methods, plus sampling, gauges and budget alerts."""

    def __init__(self, cfg: PlatformConfig, dashboard_url: str | None, name: str = COST_METER_ACTOR,
                 metrics_port: int | None = None, sample: bool = True,
                 alertmanager: str | None = None) -> None:
        from mlplat.monitoring import METRIC_NAMES, Metrics

        self._cfg = cfg
        self._meter = CostMeter(cfg, store=CostStore(cfg.local_path(f"governance/{name}.db")))
        self._dashboard_url = dashboard_url
        self._last_collect_error = ""
        self._alertmanager = alertmanager
        self._alerts: list[dict[str, Any]] = []
        self._metrics = Metrics([n for n in METRIC_NAMES if n.startswith("mlplat_cost_")])
        self._metrics.serve(cfg.monitoring.cost_metrics_port if metrics_port is None
                            else metrics_port)
        self._sample_s = cfg.active_profile().monitoring_timing.cost_sample_s
        self._samples = 0
        if sample:
            threading.Thread(target=self._sampler, name="cost-sampler", daemon=True).start()

    def _sampler(self) -> None:
        while True:
            time.sleep(self._sample_s)
            try:
                self.sample()
            except Exception as exc:  # keep sampling whatever one round did
                self._last_collect_error = repr(exc)
                _log.exception("cost sampling failed")

    def sample(self) -> int:
        """One round: jobs + state API → usage; then gauges and budget alerts. Returns the
        usage intervals written (the sampler thread calls this every cost_sample_s)."""
        from ray.job_submission import JobSubmissionClient
        from ray.util.state import list_actors, list_nodes, list_tasks

        if not self._dashboard_url:
            raise InfraError("No Ray dashboard URL to sample; pass dashboard_url.")
        url = self._dashboard_url
        try:
            jobs = JobSubmissionClient(url).list_jobs()
            kw: dict[str, Any] = {"address": url, "limit": _STATE_LIMIT,
                                  "raise_on_missing_output": False, "timeout": 30}
            nodes = list_nodes(**kw)
            actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, **kw)
            tasks = list_tasks(filters=[("type", "=", "NORMAL_TASK")], detail=True, **kw)
        except Exception as exc:  # the SDKs raise bare ConnectionError/RuntimeError
            self._last_collect_error = f"Cannot read Ray's job/state API at {url}: {exc}"
            return 0
        self._meter.ingest_jobs(jobs)
        written = self._meter.ingest_state(nodes, jobs, actors, tasks)
        self._last_collect_error = ""
        self._samples += 1
        self._publish(self._meter.report())
        return written

    def _publish(self, report: CostReport) -> None:
        from mlplat.monitoring import alertmanager_url, post_alert

        m = self._metrics
        for team, models in report.by_team_model.items():
            for model, usd in models.items():
                m.set("mlplat_cost_usd", usd, team=team, model=model)
        kinds: dict[tuple[str, str, str], float] = {}
        for r in report.records:
            kinds[(r.team, r.model, r.kind)] = kinds.get((r.team, r.model, r.kind), 0.0) + r.cost_usd
        for (team, model, kind), usd in kinds.items():
            m.set("mlplat_cost_kind_usd", usd, team=team, model=model, kind=kind)
        for pool, usd in report.by_pool.items():
            m.set("mlplat_cost_pool_usd", usd, pool=pool, capacity=self._cfg.pools[pool].capacity)  # type: ignore[index]
        for team, b in report.budgets.items():
            m.set("mlplat_cost_team_week_usd", b["week_usd"], team=team)
            m.set("mlplat_cost_team_budget_usd", b["budget_usd_per_week"], team=team)
        for model, usd in report.per_inference_usd.items():
            m.set("mlplat_cost_per_inference_usd", usd, model=model)
        for model, usd in report.per_1k_tokens_usd.items():
            m.set("mlplat_cost_per_1k_tokens_usd", usd, model=model)
        for key, res in report.resource_seconds.items():
            team, _, model = key.partition("/")
            for resource, seconds in res.items():
                m.set("mlplat_cost_resource_seconds", seconds, team=team, model=model,
                      resource=resource)
        url = self._alertmanager or alertmanager_url(self._cfg)
        # Without an Alertmanager the Prometheus rule TeamBudgetExceeded is the only alert.
        for team, usd, budget in self._meter.budget_breaches() if url else []:
            try:
                self._alerts.append(post_alert(
                    self._cfg, "TeamBudgetExceeded", "warning", team, {},
                    {"summary": f"team {team} spent ${usd:,.2f} in the last 7 days, over its "
                                f"${budget:,.2f} weekly budget",
                     "description": "See `mlplat cost report --since 7d --by model`."},
                    url=url))
            except MlplatError as exc:
                self._last_collect_error = f"budget alert for {team} not posted: {exc}"

    @survives_restart
    def ping(self) -> dict[str, str]:
        """Liveness plus where the actor runs (its node and that node's pool label)."""
        return {**node_info(), "metrics_port": str(self._metrics.port or "")}

    def record_usage(self, team: str, model: str, kind: UsageKind, pool: str, cpus: float,
                     seconds: float, source: str, gpus: float = 0.0,
                     memory_gib: float = 0.0) -> CostRecord:
        return self._meter.record_usage(team, model, kind, pool, cpus, seconds, source, gpus,
                                        memory_gib)

    def record_inferences(self, model: str, count: int) -> int:
        return self._meter.record_inferences(model, count)

    def record_tokens(self, model: str, count: int) -> int:
        return self._meter.record_tokens(model, count)

    def register_serving(self, app: str, team: str, model: str) -> None:
        self._meter.register_serving(app, team, model)

    def ingest_jobs(self, jobs: Iterable[Any]) -> list[CostRecord]:
        return self._meter.ingest_jobs(jobs)

    def collect_jobs(self, dashboard_url: str | None = None) -> list[CostRecord]:
        url = dashboard_url or self._dashboard_url
        if not url:
            raise InfraError("No Ray dashboard URL to list jobs from; pass dashboard_url.")
        return self._meter.collect_jobs(url)

    def report(self, collect: bool = True, since: float | None = None) -> CostReport:
        if collect and self._dashboard_url:
            try:
                self._meter.collect_jobs(self._dashboard_url)
                self._last_collect_error = ""
            except InfraError as exc:
                # Usage already recorded is still worth reporting when the job API is down.
                self._last_collect_error = str(exc)
        report = self._meter.report(since=since)
        # Gauges always show all-time totals, whatever period was asked for.
        self._publish(report if since is None else self._meter.report())
        return report

    @survives_restart
    def alerts_posted(self) -> list[dict[str, Any]]:
        return list(self._alerts)

    @survives_restart
    def metrics_text(self) -> str:
        return self._metrics.text()

    @survives_restart
    def last_collect_error(self) -> str:
        return self._last_collect_error

    @survives_restart
    def samples(self) -> int:
        return self._samples


def get_cost_meter(
    cfg: PlatformConfig,
    *,
    name: str = COST_METER_ACTOR,
    dashboard_url: str | None = None,
    metrics_port: int | None = None,
    sample: bool = True,
    alertmanager: str | None = None,
) -> ActorHandle:
    """Get the cost-meter actor, creating it on the ``cpu`` pool if it does not exist.

    The caller must already be connected to Ray. Usage lives in ``<root>/governance/<name>.db``
    and survives restarts.

    Args:
        cfg: Platform config (teams, pool prices, sampling period, metrics port).
        name: Actor name; tests pass their own to stay apart from the platform's actor.
        dashboard_url: Ray job/state API the actor samples; defaults to the local cluster's
            dashboard from platform.yaml (or an http ``$RAY_ADDRESS``).
        metrics_port: Prometheus ``/metrics`` port (creation only); defaults to
            ``monitoring.cost_metrics_port``, 0 turns it off.
        sample: Run the sampler thread (creation only).
        alertmanager: Alertmanager URL for budget alerts (creation only); defaults to
            ``mlplat.monitoring.alertmanager_url(cfg)``.

    Returns:
        The actor handle; ``record_usage.remote(...)`` fire-and-forget,
        ``ray.get(h.report.remote())`` for a ``CostReport``.

    Raises:
        InfraError: this process is not connected to a Ray cluster.

    Example:
        >>> meter = get_cost_meter(cfg)
        >>> meter.record_usage.remote("risk", "fraud", "replica", "serving-ondemand", 0.5, 60,
        ...                           "fraud-v2")
        >>> ray.get(meter.report.remote()).by_team["risk"]
        0.000189375
    """
    from mlplat.jobs import dashboard_url as default_dashboard_url

    return platform_actor(cfg, CostMeterActor, name, cfg,
                          dashboard_url or default_dashboard_url(cfg), name, metrics_port, sample,
                          alertmanager)
