"""The ``mlplat-drift-monitor`` actor: a thin Ray shell over ``DriftMonitor``.

Detached, named and restartable (``max_restarts=-1``), holding no CPU, on the ``cpu`` pool. It
exports each report's per-feature score and share drifted as Ray metrics, which the Ray metrics
endpoint (and so Prometheus) scrapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.cluster import PLATFORM_NAMESPACE, node_info, platform_actor
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import DriftReport
from mlplat.monitoring._drift import DEFAULT_MIN_ROWS, DriftMonitor, DriftMonitorStats

if TYPE_CHECKING:
    from ray.actor import ActorHandle

DRIFT_MONITOR_NAME = "mlplat-drift-monitor"
NAMESPACE = PLATFORM_NAMESPACE
_MAX_CONCURRENCY = 4
"""Threads in the actor: record() calls keep being served while a report computes."""


def _warm_up_evidently() -> None:
    import evidently.presets  # noqa: F401


class DriftMonitorActor:
    """Ray actor wrapping ``DriftMonitor``; same methods, plus metrics on each report."""

    def __init__(self, max_buffer_rows: int | None = None) -> None:
        import threading

        from ray.util.metrics import Counter, Gauge

        # Importing Evidently takes seconds; do it now, off the call path, so the first report
        # after a (re)start is not the slow one.
        threading.Thread(target=_warm_up_evidently, name="evidently-import", daemon=True).start()
        kwargs: dict[str, Any] = {}
        if max_buffer_rows is not None:
            kwargs["max_buffer_rows"] = max_buffer_rows
        self._monitor = DriftMonitor(**kwargs)
        self._feature_score = Gauge(
            "mlplat_drift_feature_score",
            description="Evidently drift score of one feature in the last closed window.",
            # No method tag: it changes with the window size (p-value below 1,000 rows, distance
            # above), and a tag change would leave a stale series behind.
            tag_keys=("model", "version", "feature"),
        )
        self._feature_drifted = Gauge(
            "mlplat_drift_feature_drifted",
            description="1 when the feature drifted in the last closed window, else 0.",
            tag_keys=("model", "version", "feature"),
        )
        self._share = Gauge(
            "mlplat_drift_share_drifted",
            description="Share of features that drifted in the last closed window.",
            tag_keys=("model", "version"),
        )
        self._dropped = Counter(
            "mlplat_drift_dropped_rows",
            description="Sampled rows dropped because the drift buffer was full.",
            tag_keys=("model", "version"),
        )

    def ping(self) -> dict[str, str]:
        """Liveness plus where the actor runs (its node and that node's pool label)."""
        return node_info()

    def set_reference(
        self, model: str, version: str | int, rows: list[dict[str, Any]],
        features: list[str] | None = None,
    ) -> int:
        return self._monitor.set_reference(model, version, rows, features)

    def record(
        self, model: str, version: str | int, rows: list[dict[str, Any]], scores: list[float]
    ) -> int:
        accepted = self._monitor.record(model, version, rows, scores)
        if accepted < len(rows):
            self._dropped.inc(len(rows) - accepted, tags={"model": model, "version": str(version)})
        return accepted

    def report(
        self, model: str, version: str | int, min_rows: int = DEFAULT_MIN_ROWS
    ) -> DriftReport:
        report = self._monitor.report(model, version, min_rows)
        tags = {"model": report.model, "version": report.version}
        for name, f in report.features.items():
            self._feature_score.set(f.score, tags={**tags, "feature": name})
            self._feature_drifted.set(float(f.drifted), tags={**tags, "feature": name})
        self._share.set(report.share_drifted, tags=tags)
        return report

    def latest_report(self, model: str, version: str | int) -> DriftReport | None:
        return self._monitor.latest_report(model, version)

    def stats(self) -> DriftMonitorStats:
        return self._monitor.stats()


def get_drift_monitor(
    cfg: PlatformConfig,
    *,
    name: str = DRIFT_MONITOR_NAME,
    max_buffer_rows: int | None = None,
) -> ActorHandle:
    """Get the drift-monitor actor, creating it on the ``cpu`` pool if it does not exist.

    The caller must already be connected to Ray (``ray.init(address=...)``). The actor is
    detached (outlives its creator) and restarted by Ray if it dies; its buffers and latest
    reports live in memory and are lost on restart.

    Args:
        cfg: Platform config (the pool the actor is placed on).
        name: Actor name; tests pass their own to stay apart from the platform's actor.
        max_buffer_rows: Buffer bound per model version, used only when the actor is created.

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
    return platform_actor(cfg, DriftMonitorActor, name, max_buffer_rows, max_concurrency=_MAX_CONCURRENCY)
