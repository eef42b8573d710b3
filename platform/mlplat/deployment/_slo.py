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
    extra: dict[str, list[int]] = field(default_factory=dict)
    """Further latency histograms by name (LLM: ``ttft``, ``itl``), same bucket bounds."""

    def observe(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1

    def observe_ms(self, metric: str, *values_ms: float) -> None:
        """Add samples to the named histogram ``metric`` (not a request: counts unchanged).

        Example:
            >>> c = VersionCounters(); c.observe_ms("ttft", 30.0, 40.0)
            >>> sum(c.extra["ttft"])
            2
        """
        hist = self.extra.setdefault(metric, [0] * len(LATENCY_BUCKETS_MS))
        for v in values_ms:
            hist[bisect.bisect_left(LATENCY_BUCKETS_MS, v)] += 1

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors,
                               "buckets": list(self.buckets)}
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


@dataclass(frozen=True)
class WindowStats:
    """What one version did in a window: requests, errors, error rate and p99 (ms)."""

    requests: int
    errors: int
    p99_ms: float | None
    extra_p99_ms: dict[str, float | None] = field(default_factory=dict)
    """p99 of each named histogram (``VersionCounters.observe_ms``) in the window."""
    extra_samples: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors,
                               "error_rate": round(self.error_rate, 4), "p99_ms": self.p99_ms}
        for name, p99 in self.extra_p99_ms.items():
            out[f"{name}_p99_ms"] = p99
        return out


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

    def window(self, app: str, version: str, start: float, now: float, *,
               unseen_from_zero: bool = True) -> WindowStats:
        """Version ``version`` of ``app`` between ``start`` and ``now``, summed over replicas.

        Per replica: the last snapshot at or before ``start`` is the baseline, the latest
        snapshot the end. A replica without a snapshot that old (first seen after ``start``,
        or ``start`` is older than the history) counts from zero — or, with
        ``unseen_from_zero=False``, from its oldest kept snapshot: never more than it served
        since ``start``, which is what evidence needs.
        """
        requests = errors = 0
        buckets = [0] * len(LATENCY_BUCKETS_MS)
        extra: dict[str, list[int]] = {}
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
                if series[0][0] > start and not unseen_from_zero:
                    base = series[0][1].get(version)
                b_req = base["requests"] if base else 0
                b_err = base["errors"] if base else 0
                b_buckets = base["buckets"] if base else [0] * len(LATENCY_BUCKETS_MS)
                requests += max(0, end["requests"] - b_req)
                errors += max(0, end["errors"] - b_err)
                _add_diff(buckets, end["buckets"], b_buckets)
                for name, hist in (end.get("extra") or {}).items():
                    _add_diff(extra.setdefault(name, [0] * len(LATENCY_BUCKETS_MS)), hist,
                              ((base or {}).get("extra") or {}).get(name))
        return WindowStats(requests=requests, errors=errors, p99_ms=p99_of(buckets),
                           extra_p99_ms={k: p99_of(v) for k, v in extra.items()},
                           extra_samples={k: sum(v) for k, v in extra.items()})

    def widened(self, app: str, version: str, now: float, window_s: float, since: float,
                min_requests: int) -> WindowStats:
        """The last ``window_s`` of ``version``, widened a window at a time — never back
        before ``since`` (the split took effect), never past the history — until it holds
        ``min_requests``: a version with a trickle of traffic is judged too, not only one
        whose requests land in a single window."""
        start = max(now - window_s, since)
        stats = self.window(app, version, start, now)
        while stats.requests < min_requests and start > since and now - start < self.history_s:
            start = max(start - window_s, since)
            stats = self.window(app, version, start, now)
        return stats


def _add_diff(into: list[int], end: list[int], base: list[int] | None) -> None:
    for i, e in enumerate(end):
        into[i] += max(0, e - (base[i] if base else 0))


def breach(stats: WindowStats, max_error_rate: float, max_p99_ms: float | None,
           min_requests_for_p99: int = 10,
           max_extra_p99_ms: dict[str, float] | None = None) -> str | None:
    """Why ``stats`` breaches the SLO, or None. p99s are judged only on enough requests.

    Args:
        stats: One version's window.
        max_error_rate: Largest tolerated share of failed requests.
        max_p99_ms: Request latency p99 bound (None: not judged, e.g. whole LLM generations).
        min_requests_for_p99: Fewest requests in the window before any p99 is judged.
        max_extra_p99_ms: Bounds on named histograms (LLM: ``{"ttft": …, "itl": …}``).

    Example:
        >>> breach(WindowStats(requests=4, errors=4, p99_ms=5), 0.02, 250)
        'error rate 1 > 0.02 (4 of 4 requests)'
        >>> breach(WindowStats(5, 0, 9000, {"ttft": 2000}), 0.05, None, 5, {"ttft": 1000})
        'ttft p99 2000 ms > 1000 ms (5 requests)'
    """
    if stats.requests and stats.error_rate > max_error_rate:
        return (f"error rate {stats.error_rate:.3g} > {max_error_rate:.3g} "
                f"({stats.errors} of {stats.requests} requests)")
    if stats.requests < min_requests_for_p99:
        return None
    if max_p99_ms is not None and stats.p99_ms is not None and stats.p99_ms > max_p99_ms:
        return f"p99 {stats.p99_ms:.0f} ms > {max_p99_ms:.0f} ms ({stats.requests} requests)"
    for name, bound in sorted((max_extra_p99_ms or {}).items()):
        p99 = stats.extra_p99_ms.get(name)
        if p99 is not None and p99 > bound:
            return f"{name} p99 {p99:.0f} ms > {bound:.0f} ms ({stats.requests} requests)"
    return None
