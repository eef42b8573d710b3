"""The as-of join against a brute-force oracle: the whole point-in-time semantics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplat.data._asof import ViewJoin, asof_join

T0 = pd.Timestamp("2025-01-01", tz="UTC")
KEYS = ["bank", "account_id"]


def ts(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def _oracle(labels: pd.DataFrame, views: list[tuple[ViewJoin, pd.DataFrame]]) -> pd.DataFrame:
    """Row-by-row: the qualifying row with the greatest (event ts, created ts, values)."""
    out = labels.copy()
    for view, frame in views:
        values: dict[str, list[object]] = {f: [] for f in (*view.features, view.ts_output)}
        for _, label in labels.iterrows():
            best = None
            best_rank: tuple[object, ...] | None = None
            for _, row in frame.iterrows():
                if any(pd.isna(row[k]) or row[k] != label[k] for k in KEYS):
                    continue
                t = row["event_timestamp"]
                if pd.isna(t) or pd.isna(label["event_timestamp"]):
                    continue
                if not (label["event_timestamp"] - view.ttl <= t <= label["event_timestamp"]):
                    continue
                created = row["created_timestamp"]
                rank = (
                    t,
                    (0, T0) if pd.isna(created) else (1, created),
                    *(((0, 0) if pd.isna(row[f]) else (1, row[f])) for f in view.features),
                )
                if best_rank is None or rank > best_rank:
                    best, best_rank = row, rank
            for f in view.features:
                values[f].append(None if best is None else best[f])
            values[view.ts_output].append(None if best is None else best["event_timestamp"])
        for name, column in values.items():
            out[name] = column
    return out


def _same(a: object, b: object) -> bool:
    if a is None or (not isinstance(a, str) and pd.isna(a)):
        return b is None or (not isinstance(b, str) and pd.isna(b))
    if b is None or (not isinstance(b, str) and pd.isna(b)):
        return False
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b))
    return a == b


def _assert_frames_match(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        for i, (g, w) in enumerate(zip(got[col].tolist(), want[col].tolist(), strict=True)):
            assert _same(g, w), f"row {i} column {col}: got {g!r}, want {w!r}"


# ---- strategies: few entities and few distinct minutes so ties and TTL edges are common

minute = st.integers(min_value=0, max_value=12)
entity = st.tuples(st.sampled_from(["a", "b"]), st.integers(min_value=1, max_value=3))


@st.composite
def label_frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.lists(st.tuples(entity, minute), min_size=1, max_size=12))
    return pd.DataFrame(
        {
            "bank": [e[0] for e, _ in rows],
            "account_id": [e[1] for e, _ in rows],
            "event_timestamp": [ts(m) for _, m in rows],
            "label": list(range(len(rows))),
        }
    )


@st.composite
def view_frames(draw: st.DrawFn, feature: str) -> pd.DataFrame:
    rows = draw(
        st.lists(
            st.tuples(
                entity,
                minute,
                st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
                st.integers(min_value=0, max_value=4),
            ),
            max_size=16,
        )
    )
    return pd.DataFrame(
        {
            "bank": [e[0] for e, *_ in rows],
            "account_id": [e[1] for e, *_ in rows],
            "event_timestamp": pd.Series([ts(m) for _, m, *_ in rows], dtype="datetime64[ns, UTC]"),
            "created_timestamp": pd.Series(
                [None if c is None else ts(100 + c) for _, _, c, _ in rows],
                dtype="datetime64[ns, UTC]",
            ),
            feature: pd.Series([float(v) for *_, v in rows], dtype="float64"),
        }
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=label_frames(),
    profile=view_frames("score"),
    stats=view_frames("count"),
    ttl_a=st.integers(min_value=0, max_value=6),
    ttl_b=st.integers(min_value=1, max_value=15),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_matches_bruteforce_oracle(labels, profile, stats, ttl_a, ttl_b, seed) -> None:
    views = [
        (ViewJoin("profile", ("score",), pd.Timedelta(minutes=ttl_a)), profile),
        (ViewJoin("stats", ("count",), pd.Timedelta(minutes=ttl_b)), stats),
    ]
    want = _oracle(labels, views)
    got = asof_join(labels, views, KEYS)
    _assert_frames_match(got, want)
    # Input order must not matter (rows of one entity reach the join in any order).
    rng = np.random.default_rng(seed)
    shuffled = [(v, f.sample(frac=1, random_state=rng)) for v, f in views]
    _assert_frames_match(asof_join(labels, shuffled, KEYS), want)


def _one_view(rows: list[tuple[float, float | None, float]], ttl_min: float = 10) -> tuple:
    frame = pd.DataFrame(
        {
            "bank": "a",
            "account_id": 1,
            "event_timestamp": [ts(m) for m, _, _ in rows],
            "created_timestamp": pd.Series(
                [None if c is None else ts(c) for _, c, _ in rows], dtype="datetime64[ns, UTC]"
            ),
            "x": [v for *_, v in rows],
        }
    )
    return ViewJoin("v", ("x",), pd.Timedelta(minutes=ttl_min)), frame


def _labels(*minutes: float) -> pd.DataFrame:
    return pd.DataFrame({"bank": "a", "account_id": 1, "event_timestamp": [ts(m) for m in minutes]})


def test_ttl_edges_are_inclusive_and_future_rows_never_match() -> None:
    view = _one_view([(0, None, 1.0), (30, None, 2.0)], ttl_min=10)
    out = asof_join(_labels(0, 10, 10.001, 29.999), [view], KEYS)
    # exact match, exactly ttl old, just past ttl, just before the next (future) row
    assert out["x"].tolist()[:2] == [1.0, 1.0]
    assert out["x"].isna().tolist()[2:] == [True, True]


def test_latest_created_wins_a_tie_and_missing_created_loses() -> None:
    view = _one_view([(5, 7, 1.0), (5, 9, 2.0), (5, None, 3.0)])
    assert asof_join(_labels(6), [view], KEYS)["x"].tolist() == [2.0]


def test_labels_keep_order_and_rows_with_null_keys() -> None:
    labels = pd.DataFrame(
        {
            "bank": ["a", None, "a"],
            "account_id": [1, 1, 1],
            "event_timestamp": [ts(20), ts(20), ts(3)],
        }
    )
    out = asof_join(labels, [_one_view([(2, None, 1.0), (15, None, 2.0)])], KEYS)
    assert out["bank"].tolist()[::2] == ["a", "a"]
    assert out["x"].tolist()[::2] == [2.0, 1.0]
    assert pd.isna(out["x"].iloc[1])
    assert out["v__event_timestamp"].iloc[0] == ts(15)


@pytest.mark.parametrize("other_bank", ["b", "c"])
def test_composite_keys_must_all_match(other_bank: str) -> None:
    view, frame = _one_view([(0, None, 1.0)])
    frame = frame.assign(bank=other_bank)
    assert asof_join(_labels(1), [(view, frame)], KEYS)["x"].isna().all()


FAR = pd.Timedelta(days=6 * 365)  # one "minute" of the strategies becomes six years


def _far(frame: pd.DataFrame) -> pd.DataFrame:
    """Event times stretched so a few entities over the span overflow ``id * time offset`` in
    int64 and the kernel ranks the view's distinct times instead."""
    steps = (frame["event_timestamp"] - T0) / pd.Timedelta(minutes=1)
    start = pd.Timestamp("1750-01-01", tz="UTC")
    return frame.assign(event_timestamp=[start + s * FAR for s in steps])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels=label_frames(), stats=view_frames("count"), ttl=st.integers(min_value=0, max_value=6))
def test_times_too_far_apart_for_offsets_still_match_the_oracle(labels, stats, ttl) -> None:
    views = [(ViewJoin("stats", ("count",), ttl * FAR), _far(stats))]
    labels = _far(labels)
    _assert_frames_match(asof_join(labels, views, KEYS), _oracle(labels, views))
