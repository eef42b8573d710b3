"""Business KPI and performance drift from outcomes that arrive after the prediction.

For fraud the outcomes are chargebacks (fraud, with the amount lost) and manual-review verdicts
(fraud or legitimate), joined to the window's predictions by transaction id. Per closed window
and per model version the monitor reports fraud caught in dollars (acted on: score ≥
``monitoring.decision_threshold``), fraud missed, the cost of reviewing legitimate cases
(``monitoring.review_cost_usd`` each), precision and recall — and how drift moved with the KPI.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from mlplat.config import MonitoringPolicy
from mlplat.monitoring._store import DriftStore


class WindowKpi(BaseModel):
    """The KPI of one closed window, over the predictions whose outcome is known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    window_start: datetime
    window_end: datetime
    share_drifted: float
    outcomes: int = Field(description="Predictions in the window with a known outcome.")
    fraud_caught_usd: float = Field(description="Value of positive outcomes the model acted on.")
    fraud_missed_usd: float = Field(description="Value of positive outcomes it let through.")
    false_positives: int
    false_positive_cost_usd: float = Field(description="false_positives × review_cost_usd.")
    net_usd: float = Field(description="fraud_caught_usd − false_positive_cost_usd.")
    precision: float | None = None
    recall: float | None = None


class KpiReport(BaseModel):
    """KPI per window and per model version, performance drift, and drift ↔ KPI correlation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    windows: list[WindowKpi]
    by_version: dict[str, dict[str, float | None]] = Field(
        description="version → fraud_caught_usd, false_positive_cost_usd, net_usd, precision, recall."
    )
    performance_drop: dict[str, float] = Field(
        description="version → recall of its first window with outcomes − recall of its latest "
        "(> 0: the model catches less than it did; performance drift)."
    )
    drift_kpi_correlation: float | None = Field(
        description="Pearson correlation, over windows, of share_drifted with the KPI's movement "
        "(net_usd minus the version's first window's); None with fewer than 3 windows with "
        "outcomes or no variation."
    )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy)


def kpi_report(store: DriftStore, model: str, policy: MonitoringPolicy) -> KpiReport:
    """Join the model's stored predictions with the outcomes received so far.

    Example:
        >>> kpi_report(monitor.store, "fraud", cfg.monitoring).by_version["3"]["fraud_caught_usd"]
        1240.5
    """
    history = store.window_history(model)
    acc: dict[tuple[str, float], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # per window: outcomes, caught $, missed $, false positives, true positives, positives
    for version, window_end, score, label, value in store.joined(model):
        a = acc[(version, window_end)]
        acted = score >= policy.decision_threshold
        a[0] += 1
        if label:
            a[5] += 1
            if acted:
                a[1] += value
                a[4] += 1
            else:
                a[2] += value
        elif acted:
            a[3] += 1
    windows: list[WindowKpi] = []
    for version, start, end, share, _severity in history:
        c = acc.get((version, end))
        if c is None:
            continue
        fp_cost = c[3] * policy.review_cost_usd
        windows.append(WindowKpi(
            version=version, window_start=datetime.fromtimestamp(start, tz=UTC),
            window_end=datetime.fromtimestamp(end, tz=UTC), share_drifted=share,
            outcomes=int(c[0]), fraud_caught_usd=c[1], fraud_missed_usd=c[2],
            false_positives=int(c[3]), false_positive_cost_usd=fp_cost, net_usd=c[1] - fp_cost,
            precision=_ratio(c[4], c[4] + c[3]), recall=_ratio(c[4], c[5]),
        ))
    by_version: dict[str, dict[str, float | None]] = {}
    drop: dict[str, float] = {}
    for version in sorted({w.version for w in windows}):
        ws = [w for w in windows if w.version == version]
        caught = sum(w.fraud_caught_usd for w in ws)
        missed = sum(w.fraud_missed_usd for w in ws)
        fp = sum(w.false_positive_cost_usd for w in ws)
        by_version[version] = {"fraud_caught_usd": caught, "fraud_missed_usd": missed,
                               "false_positive_cost_usd": fp, "net_usd": caught - fp,
                               "windows": float(len(ws))}
        recalls = [w.recall for w in ws if w.recall is not None]
        if len(recalls) >= 2:
            drop[version] = recalls[0] - recalls[-1]
    first: dict[str, float] = {}
    moves = []
    for w in windows:
        base = first.setdefault(w.version, w.net_usd)
        moves.append((w.share_drifted, w.net_usd - base))
    corr = _pearson([m[0] for m in moves], [m[1] for m in moves]) if len(moves) >= 3 else None
    return KpiReport(model=model, windows=windows, by_version=by_version,
                     performance_drop=drop, drift_kpi_correlation=corr)
