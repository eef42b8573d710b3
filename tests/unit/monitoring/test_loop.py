"""Outcomes → KPI, the retrain policy's cooldown and audit, and alert input checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplat.config import load_config
from mlplat.errors import NotFoundError, UserError
from mlplat.monitoring import DriftMonitor, DriftStore, RetrainPolicy, kpi_report, post_alert

REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0

    def __call__(self) -> float:
        return self.t


def _rows(seed: int, n: int, shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    mix = [0.2, 0.2, 0.6] if shift > 0.7 else [1 / 3, 1 / 3, 1 / 3]  # big shifts move both
    return [{"amount": float(a), "country": str(c)} for a, c in
            zip(rng.lognormal(3 + shift, 0.8, n), rng.choice(["DE", "FR", "US"], n, p=mix),
                strict=True)]


def test_late_outcomes_give_kpi_per_version_and_drift_correlation() -> None:
    cfg = load_config(REPO / "platform.yaml")
    policy = cfg.monitoring
    clock = Clock()
    mon = DriftMonitor(clock=clock, policy=policy)
    mon.set_reference("fraud", 3, _rows(1, 1500))
    outcomes = []
    # Three windows, drift growing; the model catches less fraud as it drifts.
    for w, (shift, caught) in enumerate([(0.0, 8), (0.5, 5), (1.0, 2)]):
        ids = [f"w{w}-t{i}" for i in range(1000)]
        scores = [0.9 if i < caught else (0.8 if 10 <= i < 12 else 0.1) for i in range(1000)]
        mon.record("fraud", 3, _rows(10 + w, 1000, shift), scores, ids=ids)
        clock.t += 60
        mon.report("fraud", 3)
        outcomes += [{"id": f"w{w}-t{i}", "label": True, "value_usd": 100.0,
                      "source": "chargeback"} for i in range(10)]  # 10 frauds per window
        outcomes += [{"id": f"w{w}-t{i}", "label": False, "source": "review"}
                     for i in (10, 11)]  # two reviewed, legitimate
    assert mon.record_outcomes("fraud", outcomes) == len(outcomes)
    kpi = kpi_report(mon.store, "fraud", policy)
    assert [w.fraud_caught_usd for w in kpi.windows] == [800.0, 500.0, 200.0]
    assert [w.fraud_missed_usd for w in kpi.windows] == [200.0, 500.0, 800.0]
    assert [w.false_positive_cost_usd for w in kpi.windows] == [2 * policy.review_cost_usd] * 3
    assert kpi.by_version["3"]["fraud_caught_usd"] == 1500.0
    assert kpi.performance_drop["3"] == pytest.approx(0.8 - 0.2)
    # Drift went up while the KPI went down.
    assert [w.share_drifted for w in kpi.windows] == [0.0, 0.5, 1.0]
    assert kpi.drift_kpi_correlation is not None and kpi.drift_kpi_correlation < 0
    with pytest.raises(UserError, match="value_usd='lots' is not a number"):
        mon.record_outcomes("fraud", [{"id": "x", "label": True, "value_usd": "lots"}])


def _critical(mon: DriftMonitor, clock: Clock, seed: int) -> Any:
    mon.record("fraud", 3, _rows(seed, 300, shift=1.5), [0.5] * 300)
    clock.t += 60
    return mon.report("fraud", 3)


def test_one_drift_episode_submits_one_audited_job_per_cooldown(tmp_path: Path) -> None:
    cfg = load_config(REPO / "platform.yaml")
    clock = Clock()
    store = DriftStore(tmp_path / "drift.db")
    mon = DriftMonitor(clock=clock, policy=cfg.monitoring, store=store)
    mon.set_reference("fraud", 3, _rows(1, 1500))
    submitted: list[tuple[Any, list[str], dict[str, str]]] = []
    audit: list[tuple[Any, ...]] = []

    def submit(target: Any, args: list[str], meta: dict[str, str]) -> str:
        submitted.append((target, args, meta))
        return f"raysubmit_{len(submitted)}"

    def policy() -> RetrainPolicy:  # a fresh one = an actor restart; state is in the store
        return RetrainPolicy(cfg, store, submit, lambda *a, **k: audit.append((a, k)), clock)

    policy().set_target("fraud", dataset="/data/fraud")
    report = _critical(mon, clock, 2)
    assert report.severity == "critical"
    assert policy().on_report(report) == "raysubmit_1"
    target, args, meta = submitted[0]
    assert target.team == "risk"
    assert args[:4] == ["--app", "fraud", "--dataset", "/data/fraud"]
    assert meta["team"] == "risk" and meta["model"] == "fraud" and meta["trigger"] == "drift"
    assert meta["pool"] == "training-spot"
    # Still critical, within the cooldown: nothing, even after a restart.
    assert policy().on_report(_critical(mon, clock, 3)) is None
    assert len(submitted) == 1 and len(audit) == 1
    (args_, kwargs), = audit
    assert args_[1] == "monitoring.retrain" and kwargs["details"]["job_id"] == "raysubmit_1"
    # After the cooldown, a critical window submits again.
    clock.t += cfg.active_profile().monitoring_timing.retrain_cooldown_s
    assert policy().on_report(_critical(mon, clock, 4)) == "raysubmit_2"


def test_failed_submission_is_audited_and_retried(tmp_path: Path) -> None:
    cfg = load_config(REPO / "platform.yaml")
    clock = Clock()
    store = DriftStore(":memory:")
    mon = DriftMonitor(clock=clock, policy=cfg.monitoring, store=store)
    mon.set_reference("fraud", 3, _rows(1, 1500))
    audit: list[dict[str, Any]] = []

    def broken(*_: Any) -> str:
        raise RuntimeError("No available agent")

    p = RetrainPolicy(cfg, store, broken, lambda *a, **k: audit.append(k), clock)
    assert p.on_report(_critical(mon, clock, 2)) is None
    assert "No available agent" in p.last_error and audit[0]["outcome"] == "failed"
    assert store.retrain_state("fraud") is None  # not in cooldown: the next window retries


def test_post_alert_checks_its_input_before_any_network() -> None:
    cfg = load_config(REPO / "platform.yaml")
    with pytest.raises(NotFoundError, match="Unknown team 'nobody'"):
        post_alert(cfg, "X", "critical", "nobody", url="http://127.0.0.1:9")
    with pytest.raises(UserError, match="severity must be one of"):
        post_alert(cfg, "X", "page-me", "risk", url="http://127.0.0.1:9")
    with pytest.raises(UserError, match="must be strings"):
        post_alert(cfg, "X", "critical", "risk", {"version": 3}, url="http://127.0.0.1:9")  # type: ignore[dict-item]


def test_cost_report_since_parses_durations_and_names_bad_ones() -> None:
    import time

    from mlplat.cli._monitoring import parse_since

    assert time.time() - (parse_since("1d") or 0) == pytest.approx(86400, abs=5)
    assert time.time() - (parse_since("90m") or 0) == pytest.approx(5400, abs=5)
    assert parse_since(None) is None
    with pytest.raises(UserError, match="--since 'yesterday' is not a duration"):
        parse_since("yesterday")
