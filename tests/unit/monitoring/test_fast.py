"""The fast path agrees with Evidently's DataDriftPreset, and the monitor's state survives restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlplat.config import load_config
from mlplat.monitoring import DriftMonitor, DriftStore, ReferenceProfile, fast_drift
from mlplat.monitoring._evidently import evidently_drift, write_evidently_report

REPO = Path(__file__).resolve().parents[3]


def _columns(rng: np.random.Generator, n_ref: int, n_cur: int, k: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """``k`` columns of every kind Evidently distinguishes, about half of them shifted by a
    random amount (from none to large) so verdicts near the thresholds are exercised too."""
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    numerical, categorical = [], []
    for i in range(k):
        kind = i % 5
        shift = rng.choice([0.0, 0.0, 0.02, 0.05, 0.1, 0.3, 1.0])
        name = f"c{i}"
        if kind == 0:  # continuous
            ref[name], cur[name] = rng.normal(0, 1, n_ref), rng.normal(shift, 1 + shift, n_cur)
            numerical.append(name)
        elif kind == 1:  # skewed continuous
            ref[name], cur[name] = rng.lognormal(3, 0.8, n_ref), rng.lognormal(3 + shift, 0.8, n_cur)
            numerical.append(name)
        elif kind == 2:  # numeric with few values
            p = np.array([0.5, 0.3, 0.2])
            q = p + np.array([-shift, shift / 2, shift / 2]) * 0.5
            ref[name] = rng.choice([1.0, 2.0, 3.0], n_ref, p=p)
            cur[name] = rng.choice([1.0, 2.0, 3.0], n_cur, p=q / q.sum())
            numerical.append(name)
        elif kind == 3:  # categorical, several values
            p = np.array([0.4, 0.3, 0.2, 0.1])
            q = np.clip(p + np.array([-shift, 0, 0, shift]) * 0.3, 0.01, None)
            ref[name] = rng.choice(list("ABCD"), n_ref, p=p)
            cur[name] = rng.choice(list("ABCD"), n_cur, p=q / q.sum())
            categorical.append(name)
        else:  # binary categorical
            q = min(0.95, 0.3 + shift * 0.3)
            ref[name] = rng.choice(["no", "yes"], n_ref, p=[0.7, 0.3])
            cur[name] = rng.choice(["no", "yes"], n_cur, p=[1 - q, q])
            categorical.append(name)
    return pd.DataFrame(ref), pd.DataFrame(cur), numerical, categorical


@pytest.mark.parametrize("n_ref", [800, 3000], ids=["p-value tests", "distance tests"])
def test_fast_path_flags_agree_with_evidently_on_99_percent_of_columns(n_ref: int) -> None:
    rng = np.random.default_rng(n_ref)
    ref, cur, numerical, categorical = _columns(rng, n_ref, 1500, k=40)
    profile = ReferenceProfile.from_frame(ref, numerical, categorical)
    fast = fast_drift(profile, cur, p_value=0.05, distance_threshold=0.1)
    evidently, _ = evidently_drift(ref, cur, numerical, categorical, preset=False)
    agree = sum(fast[c].drifted == evidently[c].drifted for c in fast)
    drifted = sum(f.drifted for f in evidently.values())
    assert 8 <= drifted <= 36, "the generated set must hold drifted and undrifted columns"
    assert agree / len(fast) >= 0.99, {c: (fast[c], evidently[c]) for c in fast
                                       if fast[c].drifted != evidently[c].drifted}
    # Same test and (up to float noise) the same score as Evidently picks.
    for c in fast:
        assert fast[c].method.split(" (")[0].lower() in evidently[c].method.lower()
        assert fast[c].score == pytest.approx(evidently[c].score, rel=1e-6, abs=1e-9)


class Clock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0

    def __call__(self) -> float:
        return self.t


def _rows(seed: int, n: int, shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"amount": float(a), "country": str(c)} for a, c in
            zip(rng.lognormal(3 + shift, 0.8, n), rng.choice(["DE", "FR", "US"], n), strict=True)]


def test_tumbling_windows_severity_and_state_survive_a_restart(tmp_path: Path) -> None:
    cfg = load_config(REPO / "platform.yaml")
    clock, db = Clock(), tmp_path / "drift.db"

    def monitor() -> DriftMonitor:
        return DriftMonitor(clock=clock, policy=cfg.monitoring, window_s=60,
                            store=DriftStore(db), report_dir=tmp_path / "reports")

    mon = monitor()
    mon.set_reference("fraud", 3, _rows(1, 1500), scores=[0.1] * 1500)
    mon.record("fraud", 3, _rows(2, 600), [0.1] * 600, ids=[f"t{i}" for i in range(600)])
    clock.t += 30
    assert mon.tick() == []  # not due yet
    # A restart here loses nothing: reference, open window and its rows come back.
    mon = monitor()
    assert mon.stats().windows["fraud/3"].buffered_rows == 600
    clock.t += 31
    (closed,) = mon.tick()
    assert closed.report.severity == "none" and closed.report.current_rows == 600
    assert closed.report.prediction_drift is not None and not closed.report.prediction_drift.drifted
    assert closed.report.evidently_report is not None
    # The full Evidently report (HTML + JSON) for people, from the same closed window.
    assert write_evidently_report(closed) == closed.report.evidently_report
    html = Path(f"{closed.report.evidently_report}.html")
    assert html.stat().st_size > 10_000 and "amount" in html.read_text()
    assert Path(f"{closed.report.evidently_report}.json").is_file()
    mon.record("fraud", 3, _rows(3, 600, shift=1.0), [0.9] * 600)
    clock.t += 61
    (closed,) = mon.tick()
    # amount drifted, country not: share 0.5 = monitoring.drift_share_critical.
    assert closed.report.share_drifted == 0.5 and closed.report.severity == "critical"
    assert closed.report.features["amount"].drifted
    assert closed.report.prediction_drift is not None and closed.report.prediction_drift.drifted
    mon = monitor()
    assert mon.latest_report("fraud", 3) == closed.report
    assert mon.stats().reports_made == 2 and mon.stats().buffered_rows == 0
