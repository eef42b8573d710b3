"""Our as-of join equals Feast's own ``get_historical_features`` row for row, and never leaks.

Feast's file (dask) offline store is run on the same parquet files and the same definitions:
three feature views over a composite entity key (``bank``, ``account_id``), TTLs of different
lengths, rows at exactly the label time and exactly ``ttl`` before it, same-timestamp
corrections with later created timestamps, out-of-order files. Two documented differences are pinned exactly: Feast drops a label row when a view has rows for
its entity but none inside ``[label_ts - ttl, label_ts]`` (we keep it, with nulls), and it
collapses label rows that repeat an entity and timestamp (we keep every label row).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlplat.data._asof import ViewJoin, asof_join

T0 = pd.Timestamp("2025-01-01", tz="UTC")
KEYS = ["bank", "account_id"]
VIEWS = {  # name → (features, ttl)
    "profile": (("age_days", "limit"), timedelta(days=30)),
    "stats_1h": (("count_1h", "amount_1h"), timedelta(hours=1)),
    "stats_7d": (("count_7d",), timedelta(days=7)),
}


def _minutes(rng: np.random.Generator, n: int, high: int) -> pd.Series:
    return pd.Series(T0 + pd.to_timedelta(rng.integers(0, high, n) * 60, unit="s"))


def _data(seed: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    rng = np.random.default_rng(seed)
    banks = np.array(["a", "b", "c"], dtype=object)
    n_labels, span = 600, 4 * 24 * 60  # minutes
    labels = pd.DataFrame(
        {
            "bank": banks[rng.integers(0, 3, n_labels)],
            # accounts 12-14 have no feature rows at all: those labels get nulls from everyone
            "account_id": rng.integers(1, 15, n_labels).astype("int64"),
            "event_timestamp": _minutes(rng, n_labels, span),
            "is_fraud": rng.integers(0, 2, n_labels).astype("int64"),
        }
    )
    # Feast keeps one row per (entity, timestamp): make the label set unique on it here and
    # pin the difference in test_feast_collapses_repeated_label_rows below.
    labels = labels.drop_duplicates(subset=[*KEYS, "event_timestamp"]).reset_index(drop=True)
    frames: dict[str, pd.DataFrame] = {}
    for i, (name, (features, ttl)) in enumerate(VIEWS.items()):
        n = 1500 if ttl < timedelta(days=1) else 400
        ts = _minutes(rng, n, span)
        # Rows exactly at a label's time and exactly `ttl` before it: both ends must match.
        picks = labels.sample(40, random_state=seed + i)
        edge_ts = pd.concat([picks["event_timestamp"][:20], picks["event_timestamp"][20:] - ttl])
        frame = pd.DataFrame(
            {
                "bank": np.concatenate([banks[rng.integers(0, 3, n)], picks["bank"]]),
                "account_id": np.concatenate(
                    [rng.integers(1, 12, n), picks["account_id"]]
                ).astype("int64"),
                "event_timestamp": pd.concat([ts, edge_ts], ignore_index=True),
            }
        )
        frame["created_timestamp"] = frame["event_timestamp"] + pd.Timedelta(minutes=1)
        for f in features:
            frame[f] = rng.integers(0, 1000, len(frame)).astype(
                "int64" if "count" in f or "days" in f else "float64"
            ) * (1 if "count" in f or "days" in f else 0.25)
        # Corrections: same entity and event time, a later created timestamp, other values.
        fix = frame.sample(60, random_state=seed + 10 + i).copy()
        fix["created_timestamp"] += pd.Timedelta(minutes=5)
        for f in features:
            fix[f] = fix[f] + 1
        frame = pd.concat([frame, fix], ignore_index=True)
        frames[name] = frame.sample(frac=1, random_state=seed + 20 + i).reset_index(drop=True)
    return labels, frames


def _feast_store(tmp_path: Path, frames: dict[str, pd.DataFrame]):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64

    bank = Entity(name="bank", join_keys=["bank"], value_type=ValueType.STRING)
    account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
    views = []
    for name, (features, ttl) in VIEWS.items():
        path = tmp_path / f"{name}.parquet"
        frames[name].to_parquet(path, index=False)
        views.append(
            FeatureView(
                name=name,
                entities=[bank, account],
                ttl=ttl,
                schema=[
                    Field(name=f, dtype=Int64 if frames[name][f].dtype == "int64" else Float64)
                    for f in features
                ],
                source=FileSource(
                    name=f"{name}_source",
                    path=str(path),
                    timestamp_field="event_timestamp",
                    created_timestamp_column="created_timestamp",
                ),
            )
        )
    config = RepoConfig(
        project="parity",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
        offline_store={"type": "dask"},
        entity_key_serialization_version=3,
        repo_path=str(tmp_path),
    )
    store = FeatureStore(config=config)
    store.apply([bank, account, *views])
    return store


def _feast_join(store, labels: pd.DataFrame, views: list[str]) -> pd.DataFrame:
    refs = [f"{name}:{f}" for name in views for f in VIEWS[name][0]]
    return store.get_historical_features(entity_df=labels, features=refs).to_df()


def _ours(labels: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    views = [
        (ViewJoin(name, features, pd.Timedelta(ttl)), frames[name])
        for name, (features, ttl) in VIEWS.items()
    ]
    return asof_join(labels, views, KEYS)


def _plain(v: object) -> object:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | float | np.number):
        return float(v)
    return v


def _by_label(df: pd.DataFrame, columns: list[str]) -> dict[tuple, tuple]:
    """(bank, account, ts) → the other columns, as plain Python values (ints and floats alike)."""
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    out = {}
    for i, key in enumerate(zip(df["bank"], df["account_id"].astype(int), ts, strict=True)):
        out[key] = tuple(_plain(df[c].iloc[i]) for c in columns)
    assert len(out) == len(df)
    return out


def test_equal_to_feast_get_historical_features_row_for_row(tmp_path: Path) -> None:
    labels, frames = _data(0)
    store = _feast_store(tmp_path, frames)
    ours = _ours(labels, frames)
    # Every view alone, then all three together, through Feast's file offline store.
    for views in [[name] for name in VIEWS] + [list(VIEWS)]:
        columns = ["is_fraud", *(f for name in views for f in VIEWS[name][0])]
        feast_rows = _by_label(_feast_join(store, labels, views), columns)
        our_rows = _by_label(ours, columns)
        row_of = {key: i for i, key in enumerate(our_rows)}
        # Feast drops a label row when a view has rows for the entity but none in its window.
        has_rows = {
            name: set(zip(frames[name]["bank"], frames[name]["account_id"], strict=True))
            for name in views
        }
        dropped_by_feast = {
            key
            for key, i in zip(our_rows, range(len(ours)), strict=True)
            if any(
                (key[0], key[1]) in has_rows[name]
                and pd.isna(ours[f"{name}__event_timestamp"].iloc[i])
                for name in views
            )
        }
        assert set(feast_rows) == set(our_rows) - dropped_by_feast, views
        ties = 0
        for key, feast_values in feast_rows.items():
            if our_rows[key] == feast_values:
                continue
            # Only where the chosen event time has several writes may Feast pick another one.
            i = row_of[key]
            offset = 1
            for name in views:
                features = VIEWS[name][0]
                got = feast_values[offset : offset + len(features)]
                want = our_rows[key][offset : offset + len(features)]
                offset += len(features)
                if got == want:
                    continue
                frame = frames[name]
                tied = frame[
                    (frame["bank"] == key[0])
                    & (frame["account_id"] == key[1])
                    & (frame["event_timestamp"] == ours[f"{name}__event_timestamp"].iloc[i])
                ]
                assert len(tied) > 1, f"{views} {key}: ours {want}, Feast {got}, no tie"
                candidates = {tuple(_plain(v) for v in r) for r in tied[list(features)].values}
                assert got in candidates, (key, got, candidates)
                latest = tied.sort_values("created_timestamp").iloc[-1]
                assert want == tuple(_plain(latest[f]) for f in features)
                ties += 1
        print(f"{views}: {len(feast_rows)} rows equal except {ties} same-timestamp ties")
        # Not vacuous: many label rows compared, with matched features and with nulls.
        assert len(feast_rows) > 80, (views, len(feast_rows))
        assert any(v[1] is None for v in feast_rows.values())
        assert any(v[1] is not None for v in feast_rows.values())


def test_no_output_row_uses_a_feature_from_after_its_label(tmp_path: Path) -> None:
    labels, frames = _data(2)
    out = _ours(labels, frames)
    for name, (_, ttl) in VIEWS.items():
        used = out[f"{name}__event_timestamp"]
        seen = used.notna()
        assert seen.sum() > 50
        assert (used[seen] <= out.loc[seen, "event_timestamp"]).all()
        assert (used[seen] >= out.loc[seen, "event_timestamp"] - ttl).all()


def test_feast_collapses_repeated_label_rows_we_keep_them(tmp_path: Path) -> None:
    labels, frames = _data(3)
    twice = pd.concat([labels.iloc[:5], labels.iloc[:5].assign(is_fraud=7)], ignore_index=True)
    store = _feast_store(tmp_path, frames)
    assert len(_feast_join(store, twice, ["stats_7d"])) <= 5  # Feast: one row per (entity, timestamp)
    assert len(_ours(twice, frames)) == 10  # us: one row per label row, always
