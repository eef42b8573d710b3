"""The ``mlplat-cost-meter`` actor: a thin Ray shell over ``CostMeter``.

Detached, named and restartable, holding no CPU, on the ``cpu`` pool. ``report`` first pulls the
cluster's job list (best effort) so `mlplat cost report` includes every submitted job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlplat.cluster import PLATFORM_NAMESPACE, node_info, platform_actor
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import CostRecord
from mlplat.errors import InfraError
from mlplat.governance._cost import CostMeter, CostReport, UsageKind

if TYPE_CHECKING:
    from ray.actor import ActorHandle

COST_METER_NAME = "mlplat-cost-meter"
NAMESPACE = PLATFORM_NAMESPACE


class CostMeterActor:
    """Ray actor wrapping ``CostMeter``; same methods, plus cost gauges on each report."""

    def __init__(self, cfg: PlatformConfig, dashboard_url: str | None) -> None:
        from ray.util.metrics import Gauge

        self._meter = CostMeter(cfg)
        self._dashboard_url = dashboard_url
        self._last_collect_error = ""
        self._usd = Gauge(
            "mlplat_cost_usd",
            description="Spend attributed to a team and model since the meter started.",
            tag_keys=("team", "model"),
        )

    def ping(self) -> dict[str, str]:
        """Liveness plus where the actor runs (its node and that node's pool label)."""
        return node_info()

    def record_usage(self, team: str, model: str, kind: UsageKind, pool: str, cpus: float,
                     seconds: float, source: str) -> CostRecord:
        return self._meter.record_usage(team, model, kind, pool, cpus, seconds, source)

    def record_inferences(self, model: str, count: int) -> int:
        return self._meter.record_inferences(model, count)

    def ingest_jobs(self, jobs: Iterable[Any]) -> list[CostRecord]:
        return self._meter.ingest_jobs(jobs)

    def collect_jobs(self, dashboard_url: str | None = None) -> list[CostRecord]:
        url = dashboard_url or self._dashboard_url
        if not url:
            raise InfraError("No Ray dashboard URL to list jobs from; pass dashboard_url.")
        return self._meter.collect_jobs(url)

    def report(self, collect: bool = True) -> CostReport:
        if collect and self._dashboard_url:
            try:
                self._meter.collect_jobs(self._dashboard_url)
                self._last_collect_error = ""
            except InfraError as exc:
                # Usage already recorded is still worth reporting when the job API is down.
                self._last_collect_error = str(exc)
        report = self._meter.report()
        for team, models in report.by_team_model.items():
            for model, usd in models.items():
                self._usd.set(usd, tags={"team": team, "model": model})
        return report

    def last_collect_error(self) -> str:
        return self._last_collect_error


def get_cost_meter(
    cfg: PlatformConfig,
    *,
    name: str = COST_METER_NAME,
    dashboard_url: str | None = None,
) -> ActorHandle:
    """Get the cost-meter actor, creating it on the ``cpu`` pool if it does not exist.

    The caller must already be connected to Ray. Usage records live in the actor's memory and
    are lost if it restarts; job costs are rebuilt from the cluster's job list on the next report.

    Args:
        cfg: Platform config (teams, pool prices).
        name: Actor name; tests pass their own to stay apart from the platform's actor.
        dashboard_url: Ray job API the actor polls on ``report``; defaults to the local
            cluster's dashboard from platform.yaml (or an http ``$RAY_ADDRESS``).

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

    return platform_actor(cfg, CostMeterActor, name, cfg, dashboard_url or default_dashboard_url(cfg))
