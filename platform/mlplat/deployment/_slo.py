"""Live SLO counters per model version: recorded by router replicas, judged by the controller.

Each replica keeps *cumulative* counters per version (requests, errors, a latency histogram)
and pushes a snapshot to the promotion controller every ``slo_report_interval_s``. The
controller keeps a short history of snapshots per replica and answers "what did version v do
in the last window" by differencing them — summed over replicas, so it is a fleet number, and
a lost push only delays a judgement instead of skewing it.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 2000, 5000,
    10_000, float("inf"),
)
"""Histogram upper bounds; p99 resolves to the bucket bound (fine enough around the SLO)."""


@dataclass
class VersionCounters:
    """Cumulative requests, errors and latency histogram of one version in one replica.

    Example:
        >>> c = VersionCounters()
        >>> c.observe(12.0, ok=True); c.observe(40.0, ok=False)
        >>> c.requests, c.errors
        (2, 1)
    """

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))

    def observe(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "buckets": list(self.buckets)}


@dataclass(frozen=True)
class WindowStats:
    """What one version did in a window: requests, errors, error rate and p99 (ms)."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": round(self.error_rate, 4), "p99_ms": self.p99_ms}


def p99_of(buckets: list[int]) -> float | None:
    """The 99th percentile's bucket bound (None without samples).

    Example:
        >>> p99_of([0] * 3 + [100] + [0] * (len(LATENCY_BUCKETS_MS) - 4))
        10
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = 0.99 * total
    seen = 0
    for bound, n in zip(LATENCY_BUCKETS_MS, buckets, strict=True):
        seen += n
        if seen >= rank:
            return bound
    return LATENCY_BUCKETS_MS[-1]  # pragma: no cover - the loop always reaches the total


class SloWindows:
    """Controller-side history of replica snapshots; answers per-version window questions.

    Thread-safe (the controller actor takes pushes while its loop reads).

    Example:
        >>> w = SloWindows(history_s=60)
        >>> w.report("fraud", "r1", {"2": {"requests": 5, "errors": 5, "buckets": [5] + [0] * 20}},
        ...          now=10.0)
        >>> w.window("fraud", "2", start=0.0, now=11.0).errors
        5
    """

    def __init__(self, history_s: float) -> None:
        self.history_s = history_s
        self._lock = threading.Lock()
        # (app, replica) → deque[(t, {version: snapshot})]
        self._series: dict[tuple[str, str], deque[tuple[float, dict[str, Any]]]] = {}

    def report(self, app: str, replica: str, snapshot: dict[str, Any], now: float) -> None:
        with self._lock:
            series = self._series.setdefault((app, replica), deque())
            series.append((now, snapshot))
            while len(series) > 1 and series[1][0] < now - self.history_s:
                series.popleft()
            for key in [k for k, s in self._series.items() if s and s[-1][0] < now - self.history_s]:
                del self._series[key]  # a replica that stopped reporting (gone)

    def window(self, app: str, version: str, start: float, now: float) -> WindowStats:
        """Version ``version`` of ``app`` between ``start`` and ``now``, summed over replicas.

        Per replica: the last snapshot at or before ``start`` is the baseline (a replica first
        seen after ``start`` counts from zero), the latest snapshot the end.
        """
        requests = errors = 0
        buckets = [0] * len(LATENCY_BUCKETS_MS)
        with self._lock:
            for (a, _replica), series in self._series.items():
                if a != app or not series:
                    continue
                end = series[-1][1].get(version)
                if end is None:
                    continue
                base: dict[str, Any] | None = None
                for t, snap in series:
                    if t <= start:
                        base = snap.get(version)
                    else:
                        break
                b_req = base["requests"] if base else 0
                b_err = base["errors"] if base else 0
                b_buckets = base["buckets"] if base else [0] * len(LATENCY_BUCKETS_MS)
                requests += max(0, end["requests"] - b_req)
                errors += max(0, end["errors"] - b_err)
                for i, (e, b) in enumerate(zip(end["buckets"], b_buckets, strict=True)):
                    buckets[i] += max(0, e - b)
        return WindowStats(requests=requests, errors=errors, p99_ms=p99_of(buckets))


def breach(stats: WindowStats, max_error_rate: float, max_p99_ms: float,
           min_requests_for_p99: int = 10) -> str | None:
    """Why ``stats`` breaches the SLO, or None. p99 is judged only on enough samples.

    Example:
        >>> breach(WindowStats(requests=4, errors=4, p99_ms=5), 0.02, 250)
        'error rate 1 > 0.02 (4 of 4 requests)'
    """
    if stats.requests and stats.error_rate > max_error_rate:
        return (f"error rate {stats.error_rate:.3g} > {max_error_rate:.3g} "
                f"({stats.errors} of {stats.requests} requests)")
    if (stats.requests >= min_requests_for_p99 and stats.p99_ms is not None
            and stats.p99_ms > max_p99_ms):
        return f"p99 {stats.p99_ms:.0f} ms > {max_p99_ms:.0f} ms ({stats.requests} requests)"
    return None
