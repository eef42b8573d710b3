"""DriftMonitor on synthetic data: Evidently flags the shifted features and only those."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from mlplat.contracts.v1 import FeatureDrift
from mlplat.errors import NotFoundError, UserError
from mlplat.monitoring import MISSING_METHOD, DriftMonitor
from mlplat.monitoring._drift import SERVED_ROWS_PER_WINDOW
from mlplat.monitoring._store import DriftStore

N = 1500
"""Above 1,000 rows Evidently picks distance methods (Wasserstein, Jensen-Shannon) with a 0.1
threshold; below it, p-value tests, which flag about 5 % of undrifted features by chance."""


class FakeClock:
    def __init__(self, t: float = 1_767_225_600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rows(seed: int, n: int = N, amount_shift: float = 0.0,
         countries: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"amount": float(a), "age": int(b), "hour": float(h), "country": str(c)}
        for a, b, h, c in zip(
            rng.lognormal(3.0 + amount_shift, 0.8, n), rng.integers(18, 80, n),
            rng.uniform(0, 24, n), rng.choice(["DE", "FR", "US"], n, p=list(countries)),
            strict=True,
        )
    ]


@pytest.fixture()
def monitor() -> tuple[DriftMonitor, FakeClock]:
    clock = FakeClock()
    mon = DriftMonitor(clock=clock)
    assert mon.set_reference("fraud", 2, rows(seed=1)) == N
    return mon, clock


def test_no_drift_when_traffic_matches_the_reference(monitor) -> None:
    mon, clock = monitor
    clock.t += 60
    assert mon.record("fraud", 2, rows(seed=2), [0.1] * N) == N
    clock.t += 240
    report = mon.report("fraud", "2")
    assert set(report.features) == {"amount", "age", "hour", "country"}
    assert not any(f.drifted for f in report.features.values()), report.features
    assert (report.share_drifted, report.dataset_drift) == (0.0, False)
    assert (report.reference_rows, report.current_rows) == (N, N)
    assert "Wasserstein distance" in report.features["amount"].method
    assert "Jensen-Shannon distance" in report.features["country"].method
    assert report.window_start == datetime.fromtimestamp(1_767_225_600.0, tz=UTC)
    assert report.window_end == datetime.fromtimestamp(1_767_225_900.0, tz=UTC)


def test_drift_is_flagged_on_the_shifted_features_only(monitor) -> None:
    mon, clock = monitor
    mon.record("fraud", 2, rows(seed=3, amount_shift=0.7, countries=(0.2, 0.3, 0.5)), [0.5] * N)
    clock.t += 300
    report = mon.report("fraud", 2)
    assert {n for n, f in report.features.items() if f.drifted} == {"amount", "country"}
    assert report.features["amount"].score > 0.1  # a distance: large means drift
    assert report.features["age"].score < 0.1
    assert (report.share_drifted, report.dataset_drift) == (0.5, True)
    assert mon.latest_report("fraud", 2) == report

    # The window closed: the next one opens where this one ended and starts empty.
    stats = mon.stats()
    assert (stats.reports_made, stats.buffered_rows) == (1, 0)
    assert stats.windows["fraud/2"].window_start == report.window_end
    with pytest.raises(UserError, match="has 0 rows; a drift report needs at least 100"):
        mon.report("fraud", 2)


def test_too_few_rows_says_how_many_are_needed(monitor) -> None:
    mon, _ = monitor
    mon.record("fraud", 2, rows(seed=4, n=30), [0.2] * 30)
    with pytest.raises(UserError, match=r"has 30 rows; a drift report needs at least 100\. "
                                        r"Wait for 70 more"):
        mon.report("fraud", 2)
    assert mon.stats().buffered_rows == 30  # a refused report keeps the window


def test_buffer_is_bounded_and_drops_are_counted() -> None:
    mon = DriftMonitor(max_buffer_rows=50)
    assert mon.record("fraud", 3, rows(seed=5, n=40), [0.0] * 40) == 40
    assert mon.record("fraud", 3, rows(seed=6, n=40), [1.0] * 40) == 10
    window = mon.stats().windows["fraud/3"]
    assert (window.buffered_rows, window.dropped_rows, window.reference_rows) == (50, 30, 0)
    assert window.mean_score == pytest.approx(10 / 50)


def test_report_without_reference_says_how_to_set_one(monitor) -> None:
    mon, _ = monitor
    mon.record("fraud", 3, rows(seed=7), [0.0] * N)
    with pytest.raises(NotFoundError, match=r"No drift reference for fraud/3\. Did you mean "
                                            r"'fraud/2'\? Set one with set_reference"):
        mon.report("fraud", 3)


def test_malformed_batches_are_refused_and_counted(monitor) -> None:
    mon, _ = monitor
    with pytest.raises(UserError, match="got 2 rows, 1 scores"):
        mon.record("fraud", 2, [{"amount": 1.0}, {"amount": 2.0}], [0.3])
    with pytest.raises(UserError, match="list of dict rows"):
        mon.record("fraud", 2, ["not-a-dict"], [0.3])  # type: ignore[list-item]
    assert (mon.stats().rejected_batches, mon.stats().buffered_rows) == (2, 0)


def test_reference_features_must_exist() -> None:
    with pytest.raises(UserError, match=r"Features \['amt'\] are not columns"):
        DriftMonitor().set_reference("fraud", 2, rows(seed=8, n=10), features=["amt"])
    with pytest.raises(UserError, match="non-empty list of dicts"):
        DriftMonitor().set_reference("fraud", 2, [])
    with pytest.raises(UserError, match=r"Reference columns \['note'\] have no values"):
        DriftMonitor().set_reference("fraud", 2, [{"amount": 1.0, "note": None}] * 5)


def test_a_feature_missing_from_traffic_is_reported_as_drifted(monitor) -> None:
    mon, _ = monitor
    served = [{k: v for k, v in r.items() if k != "country"} for r in rows(seed=9)]
    mon.record("fraud", 2, served, [0.1] * N)
    report = mon.report("fraud", 2)
    assert report.features["country"] == FeatureDrift(score=1.0, method=MISSING_METHOD,
                                                      drifted=True)
    assert {n for n, f in report.features.items() if f.drifted} == {"country"}
    assert report.share_drifted == 0.25


def test_verdicts_match_evidentlys_own_data_drift_preset() -> None:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = rows(seed=10)
    current = rows(seed=11, amount_shift=0.7, countries=(0.2, 0.3, 0.5))
    mon = DriftMonitor()
    mon.set_reference("fraud", 2, reference)
    mon.record("fraud", 2, current, [0.0] * N)
    ours = mon.report("fraud", 2)

    definition = DataDefinition(numerical_columns=["amount", "age", "hour"],
                                categorical_columns=["country"])
    preset = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference), data_definition=definition),
    ).dict()
    count = next(m for m in preset["metrics"] if "DriftedColumnsCount" in m["config"]["type"])
    assert ours.share_drifted == pytest.approx(count["value"]["share"])
    scores = {m["config"]["column"]: float(m["value"]) for m in preset["metrics"]
              if m["config"]["type"].endswith(":ValueDrift")}
    assert {n: f.score for n, f in ours.features.items()} == pytest.approx(scores)


def test_promotion_drift_gate_compares_served_traffic_with_the_candidates_training_sample(
        monitor) -> None:
    """The gate asks whether a candidate was trained on data like today's traffic: after the
    traffic drifted, a candidate trained on the old data is flagged, one trained on data that
    caught up is not — even though production's own windows stay drifted."""
    mon, clock = monitor
    old_data = rows(seed=1)
    new_data = rows(seed=7, amount_shift=1.5, countries=(0.1, 0.2, 0.7))
    assert mon.served_drift("fraud", old_data) is None  # nothing served yet: nothing to judge
    clock.t += 60
    mon.record("fraud", 2, rows(seed=8, amount_shift=1.5, countries=(0.1, 0.2, 0.7)), [0.5] * N)
    clock.t += 240
    assert mon.report("fraud", "2").share_drifted == 0.5  # production drifted
    stale = mon.served_drift("fraud", old_data)
    fresh = mon.served_drift("fraud", new_data)
    assert stale is not None and fresh is not None
    assert stale.share_drifted == 0.5 and {n for n, f in stale.features.items() if f.drifted} \
        == {"amount", "country"}
    assert fresh.share_drifted == 0.0 and fresh.current_rows == min(N, SERVED_ROWS_PER_WINDOW)


def test_drift_gate_counts_rows_from_their_arrival_not_their_windows_close() -> None:
    """A window stays open until it has ``min_rows``: the tail of an old traffic burst waits in
    it and closes with the next burst. The gate's lookback must not count that tail as recent
    (it made a retrained candidate fail its drift gate against traffic of 20 minutes before)."""
    clock = FakeClock()
    mon = DriftMonitor(clock=clock, gate_lookback_s=60.0)
    mon.set_reference("fraud", 2, rows(seed=1))
    shifted = dict(amount_shift=1.5, countries=(0.1, 0.2, 0.7))
    mon.record("fraud", 2, rows(seed=3, n=80), [0.5] * 80)  # the old population's last requests
    clock.t += 1200  # 20 minutes without traffic: 80 < min_rows, so the window stays open
    new = rows(seed=8, **shifted)
    mon.record("fraud", 2, new, [0.5] * N)
    clock.t += 5
    mon.report("fraud", "2")  # closes the window holding both
    gate = mon.served_drift("fraud", rows(seed=9, **shifted))
    assert gate is not None and gate.current_rows == min(N, SERVED_ROWS_PER_WINDOW)
    assert gate.share_drifted == 0.0, {n: f.score for n, f in gate.features.items()}


def test_drift_gate_counts_the_rows_of_windows_still_open() -> None:
    """The newest served rows wait in an open window until it has ``min_rows``: at a few
    requests a second the closed windows of a short lookback hold fewer than ``min_rows`` rows
    although more than that were served in it. The gate judges on all of them (a retrained
    candidate was held back as 'cannot be judged' while traffic was flowing)."""
    clock = FakeClock()
    mon = DriftMonitor(clock=clock, gate_lookback_s=120.0)
    mon.set_reference("fraud", 2, rows(seed=1))
    shifted = dict(amount_shift=1.5, countries=(0.1, 0.2, 0.7))
    mon.record("fraud", 2, rows(seed=3, n=300, **shifted), [0.5] * 300)
    clock.t += 60
    mon.record("fraud", 2, rows(seed=4, n=300, **shifted), [0.5] * 300)
    gate = mon.served_drift("fraud", rows(seed=9, **shifted), min_rows=500)
    stale = mon.served_drift("fraud", rows(seed=2), min_rows=500)
    assert gate is not None and stale is not None and gate.current_rows == 600
    # The open rows are the shifted population: a candidate trained on it is judged closer.
    assert gate.share_drifted < stale.share_drifted, (gate.share_drifted, stale.share_drifted)
    clock.t += 90  # the first 300 rows are older than the lookback now
    assert mon.served_drift("fraud", rows(seed=9, **shifted), min_rows=500) is None


def test_drift_gate_looks_back_its_lookback_and_survives_a_monitor_restart(tmp_path) -> None:
    """The gate compares with the traffic served in the last ``gate_lookback_s`` (7 days in
    prod): kept in the monitor's store, so a restarted monitor still judges candidates, and
    windows older than the lookback no longer count."""
    clock = FakeClock()
    path = tmp_path / "drift.db"
    day = 86_400.0
    mon = DriftMonitor(clock=clock, store=DriftStore(path), gate_lookback_s=7 * day)
    mon.set_reference("fraud", 2, rows(seed=1))
    shifted = dict(amount_shift=1.5, countries=(0.1, 0.2, 0.7))
    mon.record("fraud", 2, rows(seed=8, **shifted), [0.5] * N)  # a drifted window, day 0
    mon.report("fraud", "2")
    clock.t += 3 * day
    mon.record("fraud", 2, rows(seed=9), [0.5] * N)  # an undrifted one, day 3
    mon.report("fraud", "2")
    clock.t += 1 * day

    restarted = DriftMonitor(clock=clock, store=DriftStore(path), gate_lookback_s=7 * day)
    both = restarted.served_drift("fraud", rows(seed=2))
    assert both is not None and both.current_rows == 2 * min(N, SERVED_ROWS_PER_WINDOW)
    assert both.share_drifted > 0  # half the kept traffic is drifted

    clock.t += 4 * day  # day 8: the drifted window is older than 7 days, the other is not
    recent = restarted.served_drift("fraud", rows(seed=2))
    assert recent is not None and recent.current_rows == min(N, SERVED_ROWS_PER_WINDOW)
    assert recent.share_drifted == 0.0
    clock.t += 7 * day  # nothing served within the lookback: nothing to judge on
    assert restarted.served_drift("fraud", rows(seed=2)) is None
