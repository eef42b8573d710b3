"""The synthetic fraud data: deterministic, true rolling windows, a learnable label."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from tests.unit.data.conftest import END


def _auc(score: pd.Series, label: pd.Series) -> float:
    ranks = score.rank()
    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module")
def default_size(tmp_path_factory: pytest.TempPathFactory, datagen: ModuleType) -> dict:
    started = time.perf_counter()
    paths = datagen.generate(tmp_path_factory.mktemp("raw"), end=END)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, **{k: pd.read_parquet(v) for k, v in paths.items()}}


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path, datagen: ModuleType) -> None:
    a = datagen.generate(tmp_path / "a", n_accounts=25, days=2, seed=3, end=END)
    b = datagen.generate(tmp_path / "b", n_accounts=25, days=2, seed=3, end=END)
    c = datagen.generate(tmp_path / "c", n_accounts=25, days=2, seed=4, end=END)
    for name in a:
        pd.testing.assert_frame_equal(pd.read_parquet(a[name]), pd.read_parquet(b[name]))
    assert not pd.read_parquet(a["transactions"]).equals(pd.read_parquet(c["transactions"]))


def test_default_size_schema_and_speed(default_size: dict) -> None:
    labels = default_size["transactions"]
    assert 10_000 <= len(labels) <= 20_000
    assert default_size["seconds"] < 30  # "a few seconds" on an idle core; generous when shared
    assert str(labels["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert labels["account_id"].dtype == np.int64
    assert set(labels["is_fraud"].unique()) == {0, 1}
    assert labels["event_timestamp"].max() < pd.Timestamp(END)


def test_fraud_rate_and_learnable_signal(default_size: dict) -> None:
    labels = default_size["transactions"]
    assert 0.05 <= labels["is_fraud"].mean() <= 0.15
    typical = labels.groupby("account_id")["amount"].transform("median")
    assert _auc(labels["amount"] / typical, labels["is_fraud"]) > 0.65
    risky = labels["merchant_category"].isin(["electronics", "gift_cards"])
    assert labels.loc[risky, "is_fraud"].mean() > 2 * labels.loc[~risky, "is_fraud"].mean()


def test_stats_are_true_rolling_windows_as_of_each_snapshot(default_size: dict) -> None:
    labels, stats = default_size["transactions"], default_size["account_txn_stats"]
    sample = stats.sample(200, random_state=0)
    for _, snap in sample.iterrows():
        txns = labels[labels["account_id"] == snap["account_id"]]
        at = snap["event_timestamp"]
        for window, count_col in [
            ("1h", "txn_count_1h"),
            ("24h", "txn_count_24h"),
            ("7D", "txn_count_7d"),
        ]:
            inside = txns[
                (txns["event_timestamp"] > at - pd.Timedelta(window))
                & (txns["event_timestamp"] <= at)
            ]
            assert snap[count_col] == len(inside), (snap.to_dict(), window)
        week = txns[
            (txns["event_timestamp"] > at - pd.Timedelta("7D")) & (txns["event_timestamp"] <= at)
        ]
        assert snap["avg_amount_7d"] == pytest.approx(week["amount"].mean(), abs=0.01)
    assert (stats["created_timestamp"] > stats["event_timestamp"]).all()


def test_profile_has_updates_and_same_time_corrections(default_size: dict) -> None:
    profile = default_size["account_profile"]
    per_account = profile.groupby("account_id").size()
    assert (per_account > 1).any()
    dup = profile[profile.duplicated(["account_id", "event_timestamp"], keep=False)]
    assert (
        len(dup) > 0
        and dup.groupby(["account_id", "event_timestamp"])["created_timestamp"].nunique().min() == 2
    )


def test_naive_end_is_refused(tmp_path: Path, datagen: ModuleType) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        datagen.generate(tmp_path, end=datetime(2025, 1, 1))
    assert not any(tmp_path.iterdir())
