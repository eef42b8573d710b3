"""Dataset content hashes: independent of row order and partitioning, sensitive to content."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplat.data._hash import content_sha256, table_digest

rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-5, 5)),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        st.one_of(st.none(), st.text(max_size=3)),
    ),
    min_size=1,
    max_size=30,
)
SCHEMA = pa.schema([("i", pa.int64()), ("f", pa.float64()), ("s", pa.string())])


def _table(data: list[tuple]) -> pa.Table:
    return pa.table({n: [r[k] for r in data] for k, n in enumerate(SCHEMA.names)}, schema=SCHEMA)


def _sha(*tables: pa.Table) -> str:
    return content_sha256(SCHEMA, [table_digest(t) for t in tables])


@settings(max_examples=60, deadline=None)
@given(data=rows, cut=st.integers(0, 30), seed=st.randoms())
def test_same_hash_for_any_order_and_split(data: list[tuple], cut: int, seed) -> None:
    shuffled = list(data)
    seed.shuffle(shuffled)
    cut = min(cut, len(shuffled))
    assert _sha(_table(data)) == _sha(_table(shuffled[:cut]), _table(shuffled[cut:]))


def test_changed_dropped_or_duplicated_rows_change_the_hash() -> None:
    base = [(1, 1.0, "a"), (2, 2.0, "b")]
    h = _sha(_table(base))
    assert _sha(_table([(1, 1.0, "a"), (2, 2.5, "b")])) != h
    assert _sha(_table(base[:1])) != h
    assert _sha(_table([*base, base[0]])) != h
    assert _sha(_table([(1, None, "a"), (2, 2.0, "b")])) != h
    # the same values in another column are different content
    assert _sha(_table([(1, 1.0, "b"), (2, 2.0, "a")])) != h


def test_schema_is_part_of_the_identity() -> None:
    t = _table([(1, 1.0, "a")])
    other = pa.schema([("i", pa.int32()), ("f", pa.float64()), ("s", pa.string())])
    assert content_sha256(SCHEMA, [table_digest(t)]) != content_sha256(other, [table_digest(t)])


def test_timestamps_hash_by_instant_at_full_precision() -> None:
    ns = pa.table({"t": pa.array([1, 2], pa.timestamp("ns", tz="UTC"))})
    ns_shifted = pa.table({"t": pa.array([1, 3], pa.timestamp("ns", tz="UTC"))})
    assert table_digest(ns) != table_digest(ns_shifted)
