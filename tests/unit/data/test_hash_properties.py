"""Properties of the vectorised dataset content hash (mlplat.data._hash, scheme v2).

Two oracles: two tables must have the same digest exactly when they hold the same multiset of
canonically encoded rows (null explicit, floats exact, every NaN alike, -0.0 distinct from
0.0); and the vectorised digest must equal a row-by-row pure-Python implementation of the
scheme as the module docstring states it (``_reference_digest`` below).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlplat.data import _hash
from mlplat.data._hash import PartialDigest, _sum_u64, content_sha256, table_digest

TS = pa.timestamp("us", tz="UTC")
# name → (type, strategy of non-null values); two columns each of int and string so values can
# be swapped between columns of one type.
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy]] = {
    "a_int": (pa.int64(), st.integers(-2, 2) | st.integers(-(2**63), 2**63 - 1)),
    "b_int": (pa.int64(), st.integers(-2, 2)),
    "c_float": (
        pa.float64(),
        st.sampled_from([0.0, -0.0, 1.0, math.nan, math.inf, -math.inf, 5e-324])
        | st.floats(allow_nan=True, allow_infinity=True),
    ),
    "d_str": (
        pa.string(),
        st.text(alphabet="a1 \x00é", max_size=2) | st.text(alphabet="ab€", min_size=7, max_size=40),
    ),
    "e_str": (pa.string(), st.text(alphabet="a1", max_size=2)),
    "f_bool": (pa.bool_(), st.booleans()),
    "g_ts": (TS, st.integers(-2, 2) | st.integers(-(10**15), 10**15)),
}
NAMES = list(COLUMNS)
SCHEMA = pa.schema([(n, t) for n, (t, _) in COLUMNS.items()])


def _cell(name: str) -> st.SearchStrategy:
    return st.none() | COLUMNS[name][1]


row = st.tuples(*(_cell(n) for n in NAMES))
rows = st.lists(row, min_size=0, max_size=12)


def _table(data: list[tuple]) -> pa.Table:
    return pa.table(
        {n: pa.array([r[k] for r in data], type=t) for k, (n, (t, _)) in enumerate(COLUMNS.items())}
    )


def _key(value: object) -> object:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value.hex()
    return value


def _oracle(data: list[tuple]) -> Counter:
    return Counter(tuple(_key(v) for v in r) for r in data)


def _sha(*tables: pa.Table) -> str:
    return content_sha256(SCHEMA, [table_digest(t) for t in tables])


def _split(data: list[tuple], cuts: list[int]) -> list[pa.Table]:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    return [_table(data[a:b]) for a, b in itertools.pairwise(bounds)] or [_table([])]


@settings(max_examples=80, deadline=None)
@given(data=rows, cuts=st.lists(st.integers(0, 12), max_size=4), seed=st.randoms())
def test_any_order_any_blocks_any_chunking_same_hash(data, cuts, seed) -> None:
    shuffled = list(data)
    seed.shuffle(shuffled)
    blocks = _split(shuffled, cuts)
    assert _sha(_table(data)) == _sha(*blocks)
    # The same rows as one table of many Arrow chunks, and the partials added in any grouping.
    assert table_digest(pa.concat_tables(blocks)) == table_digest(_table(data))
    parts = [table_digest(b) for b in blocks]
    seed.shuffle(parts)
    assert sum(parts, PartialDigest()) == table_digest(_table(data))


# A mutation of a table's rows: change a cell, swap cells across same-typed columns or across
# rows, duplicate, drop or add a row.
@st.composite
def mutated(draw):
    data = draw(st.lists(row, min_size=1, max_size=8))
    out = [list(r) for r in data]
    i = draw(st.integers(0, len(out) - 1))
    what = draw(st.sampled_from(["cell", "swap_cols", "swap_rows", "dup", "drop", "add"]))
    if what == "cell":
        k = draw(st.integers(0, len(NAMES) - 1))
        out[i][k] = draw(_cell(NAMES[k]))
    elif what == "swap_cols":
        a, b = draw(st.sampled_from([(0, 1), (3, 4)]))
        out[i][a], out[i][b] = out[i][b], out[i][a]
    elif what == "swap_rows":
        j = draw(st.integers(0, len(out) - 1))
        k = draw(st.integers(0, len(NAMES) - 1))
        out[i][k], out[j][k] = out[j][k], out[i][k]
    elif what == "dup":
        out.append(list(out[i]))
    elif what == "drop":
        out.pop(i)
    else:
        out.append(list(draw(row)))
    return data, [tuple(r) for r in out]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=mutated())
def test_hash_equal_exactly_when_row_multisets_equal(pair) -> None:
    before, after = pair
    same_rows = _oracle(before) == _oracle(after)
    assert (table_digest(_table(before)) == table_digest(_table(after))) == same_rows
    assert (_sha(_table(before)) == _sha(_table(after))) == same_rows


@settings(max_examples=100, deadline=None)
@given(data=st.lists(row, min_size=1, max_size=8), k=st.integers(0, len(NAMES) - 1),
       i=st.integers(0, 7), value=st.data())
def test_any_single_changed_cell_changes_the_hash(data, k, i, value) -> None:
    i %= len(data)
    new = value.draw(_cell(NAMES[k]))
    assume(_key(new) != _key(data[i][k]))
    changed = list(data)
    changed[i] = (*data[i][:k], new, *data[i][k + 1 :])
    assert _sha(_table(data)) != _sha(_table(changed))


def test_null_differs_from_empty_zero_false_and_nan() -> None:
    def one(value: object, t: pa.DataType) -> PartialDigest:
        return table_digest(pa.table({"x": pa.array([value], type=t)}))

    assert one(None, pa.string()) != one("", pa.string())
    assert one(None, pa.int64()) != one(0, pa.int64())
    assert one(None, pa.bool_()) != one(False, pa.bool_())
    assert one(None, pa.float64()) != one(math.nan, pa.float64())
    assert one(None, pa.float64()) != one(0.0, pa.float64())
    assert one(0.0, pa.float64()) != one(-0.0, pa.float64())
    assert one(None, pa.binary()) != one(b"", pa.binary())
    assert one(None, TS) != one(0, TS)
    # A null is a null whatever the column's type (the schema fingerprint tells types apart),
    # so a block whose all-null column came out as Arrow's null type still adds up the same.
    assert one(None, pa.int64()) == one(None, pa.string()) == one(None, pa.null())
    # but a null moved to another column is another row
    assert table_digest(pa.table({"x": [None], "y": [1]})) != table_digest(
        pa.table({"x": [1], "y": [None]})
    )


def test_every_nan_is_the_same_value() -> None:
    quiet = np.array([np.nan])
    payload = np.array([0x7FF8000000000123], dtype=np.uint64).view(np.float64)
    negative = -quiet
    digests = {table_digest(pa.table({"x": pa.array(v)})) for v in (quiet, payload, negative)}
    assert len(digests) == 1


def test_int_float_and_string_one_differ_even_without_the_schema() -> None:
    d = {table_digest(pa.table({"x": pa.array([v], type=t)}))
         for v, t in ((1, pa.int64()), (1.0, pa.float64()), ("1", pa.string()),
                      (True, pa.bool_()), (b"1", pa.binary()), (1, TS))}
    assert len(d) == 6
    shas = {content_sha256(pa.schema([("x", t)]), [table_digest(pa.table({"x": pa.array([v], t)}))])
            for v, t in ((1, pa.int64()), (1.0, pa.float64()), ("1", pa.string()))}
    assert len(shas) == 3


def test_swapped_columns_and_schema_changes_change_the_hash() -> None:
    t = pa.table({"a": [1, 2], "b": [3, 4]})
    swapped = pa.table({"a": [3, 4], "b": [1, 2]})
    assert table_digest(t) != table_digest(swapped)
    assert content_sha256(t.schema, [table_digest(t)]) != content_sha256(
        swapped.schema, [table_digest(swapped)]
    )
    renamed = t.rename_columns(["a", "c"])
    assert content_sha256(t.schema, [table_digest(t)]) != content_sha256(
        renamed.schema, [table_digest(renamed)]
    )
    narrow = t.cast(pa.schema([("a", pa.int32()), ("b", pa.int64())]))
    assert content_sha256(t.schema, [table_digest(t)]) != content_sha256(
        narrow.schema, [table_digest(narrow)]
    )


def test_rows_and_sum_both_count() -> None:
    t = pa.table({"a": [1, 2, 3]})
    d = table_digest(t)
    assert d.rows == 3 and 0 <= d.total < 2**128
    assert content_sha256(t.schema, [d]) != content_sha256(t.schema, [PartialDigest(4, d.total)])
    assert content_sha256(t.schema, [d]) != content_sha256(t.schema, [PartialDigest(3, d.total + 1)])
    empty = t.slice(0, 0)
    assert table_digest(empty) == PartialDigest()
    assert content_sha256(t.schema, [table_digest(empty)]) == content_sha256(t.schema, [])


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2**256)), max_size=6),
       st.randoms())
def test_partial_digest_addition_is_associative_and_commutative(parts, seed) -> None:
    ps = [PartialDigest(r, t % 2**128) for r, t in parts]
    left = sum(ps, PartialDigest())
    seed.shuffle(ps)
    right = PartialDigest()
    for p in reversed(ps):
        right = p + right
    assert left == right


def test_exact_uint64_sum() -> None:
    x = np.random.default_rng(1).integers(0, 2**64 - 1, 10_000, dtype=np.uint64, endpoint=True)
    x[:5] = np.uint64(2**64 - 1)
    assert _sum_u64(x) == sum(int(v) for v in x)


def test_other_types_hash_by_value_and_stay_order_independent() -> None:
    t = pa.table({
        "date": pa.array([1, None, 3], pa.date32()),
        "dec": pa.array([Decimal("1.10"), None, Decimal("-2.00")], pa.decimal128(5, 2)),
        "dict": pa.array(["x", None, "x"]).dictionary_encode(),
        "f32": pa.array([1.5, None, -0.0], pa.float32()),
        "fixed": pa.array([b"ab", None, b"cd"], pa.binary(2)),
        "i8": pa.array([1, None, -1], pa.int8()),
        "large": pa.array(["a", None, ""], pa.large_string()),
        "list": pa.array([[1, None], None, []], pa.list_(pa.int64())),
        "struct": pa.array([{"p": 1, "q": "a"}, None, {"p": None, "q": None}]),
        "u64": pa.array([2**64 - 1, None, 0], pa.uint64()),
        "null": pa.nulls(3),
        "dur": pa.array([5, None, 6], pa.duration("ms")),
    })
    rev = t.take([2, 1, 0])
    assert table_digest(t) == table_digest(rev)
    with mock.patch.object(_hash, "_BLOCK", 1):  # every column sliced row by row
        assert table_digest(rev) == table_digest(t)
    with mock.patch.object(_hash, "_BLOCK", 2):
        assert table_digest(rev) == table_digest(t)
    assert table_digest(t) == sum(
        (table_digest(t.slice(i, 1)) for i in range(3)), PartialDigest()
    )
    # dictionary-encoded vs plain, large_string vs string: same values, same row digest
    # (the schema fingerprint still tells them apart).
    assert table_digest(t.select(["dict"])) == table_digest(
        pa.table({"dict": pa.array(["x", None, "x"])})
    )
    assert table_digest(t.select(["large"])) == table_digest(
        pa.table({"large": pa.array(["a", None, ""])})
    )
    # each of these columns is sensitive to its values
    for name in t.column_names:
        col = t.column(name)
        if name == "null":
            continue
        moved = t.set_column(t.column_names.index(name), name, col.take([1, 0, 2]))
        assert table_digest(moved) != table_digest(t), name
    # an empty list, a list holding a null and a null list all differ
    lists = [table_digest(pa.table({"l": pa.array([v], pa.list_(pa.int64()))}))
             for v in ([], [None], None)]
    assert len(set(lists)) == 3


# Pinned output for a fixed table: fails if the scheme, or numpy under it, ever changes what a
# dataset hashes to (which would silently re-address every stored dataset).
GOLDEN = pa.table({
    "i": pa.array([1, None, -(2**63), 2**63 - 1], pa.int64()),
    "f": pa.array([1.0, math.nan, None, -0.0]),
    "s": pa.array(["1", "", None, "héllo"]),
    "b": pa.array([True, False, None, True]),
    "t": pa.array([0, None, 1_700_000_000_000_000, -1], TS),
})
GOLDEN_SHA = "a33dc939e0f5265b06eb393548a5493892634b79caf2b53247c547db0dca4b3f"


def test_golden_value_is_stable() -> None:
    assert content_sha256(GOLDEN.schema, [table_digest(GOLDEN)]) == GOLDEN_SHA
    assert content_sha256(GOLDEN.schema, [_reference_digest(GOLDEN)]) == GOLDEN_SHA


def test_same_hash_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from test_hash_properties import GOLDEN; from mlplat.data._hash import *;"
        "print(json.dumps(content_sha256(GOLDEN.schema, [table_digest(GOLDEN)])))"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", code, here], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=120,
    ).stdout
    assert json.loads(out) == GOLDEN_SHA


@settings(max_examples=40, deadline=None)
@given(data=st.lists(row, min_size=1, max_size=20), start=st.integers(0, 19),
       length=st.integers(0, 20))
def test_sliced_arrays_hash_like_fresh_ones(data, start, length) -> None:
    # Arrow slices keep the parent's buffers with an offset (bit-packed validity and booleans
    # at any bit offset, string offsets not starting at 0): they hash as the values they show.
    start = min(start, len(data))
    sliced = _table(data).slice(start, length)
    assert table_digest(sliced) == table_digest(_table(data[start : start + length]))


@pytest.mark.parametrize("rows", [1, 300])
def test_digest_of_many_rows_matches_sum_of_single_rows(rows: int) -> None:
    rng = np.random.default_rng(rows)
    t = pa.table({
        "x": pa.array(rng.integers(0, 5, rows), mask=rng.random(rows) < 0.2),
        "y": pa.array([f"v{v}" for v in rng.integers(0, 5, rows)]),
    })
    singles = sum((table_digest(t.slice(i, 1)) for i in range(rows)), PartialDigest())
    assert singles == table_digest(t)


# --------------------------------------------------------------------------- the scheme, by row

M64 = (1 << 64) - 1


def _fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def _mix13(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


MIX = (_fmix64, _mix13)


def _c(lane: int, *parts: object) -> int:
    label = "/".join(str(p) for p in ("mlplat.table_digest.v2", lane, *parts)).encode()
    return int.from_bytes(hashlib.sha256(label).digest()[:8], "big")


def _bytes_word(lane: int, data: bytes) -> int:
    mix, total = MIX[lane], 0
    for k in range((len(data) + 7) // 8):
        u = int.from_bytes(data[8 * k : 8 * k + 8], "little")
        total = (total + mix(u ^ mix(k ^ _c(lane, "word")))) & M64
    return total ^ len(data)


def _word(lane: int, value: object, t: pa.DataType) -> tuple[str, int]:
    if pa.types.is_boolean(t):
        return "bool", int(value)  # type: ignore[call-overload]
    if pa.types.is_integer(t):
        return "int", int(value) & M64  # type: ignore[call-overload]
    if pa.types.is_floating(t):
        bits = struct.unpack("<Q", struct.pack("<d", value))[0]
        return "float", 0x7FF8000000000000 if math.isnan(value) else bits  # type: ignore[arg-type]
    if pa.types.is_timestamp(t):
        return "time", int(value) & M64  # type: ignore[call-overload]
    if pa.types.is_string(t):
        return "str", _bytes_word(lane, value.encode())  # type: ignore[union-attr]
    raise AssertionError(t)


def _reference_digest(table: pa.Table) -> PartialDigest:
    names = sorted(table.column_names)
    types = [table.schema.field(n).type for n in names]
    # timestamps as their integer count, the rest as Python values
    cols = [
        (table.column(n).cast(pa.int64()) if pa.types.is_timestamp(t) else table.column(n))
        .to_pylist()
        for n, t in zip(names, types, strict=True)
    ]
    total = 0
    for row in zip(*cols, strict=True):
        lanes = []
        for lane in (0, 1):
            acc = _c(lane, "row")
            for j, (value, t) in enumerate(zip(row, types, strict=True)):
                if value is None:
                    x = _c(lane, "null", j)
                else:
                    kind, w = _word(lane, value, t)
                    x = w ^ _c(lane, "cell", j, kind)
                acc = MIX[lane](acc ^ x)
            lanes.append(acc)
        total += (lanes[0] << 64) | lanes[1]
    return PartialDigest(table.num_rows, total % 2**128)


@settings(max_examples=60, deadline=None)
@given(data=rows, block=st.sampled_from([1, 2, 3, 5, 1 << 14]))
def test_vectorised_digest_is_the_documented_scheme(data, block) -> None:
    # any block size (rows hashed at a time) gives the same digest as the row-by-row scheme
    with mock.patch.object(_hash, "_BLOCK", block):
        assert table_digest(_table(data)) == _reference_digest(_table(data))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | st.binary(max_size=40), max_size=12))
def test_short_and_long_string_layouts_agree(values) -> None:
    arr = pa.array(values, pa.binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1)
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)
    dense, flat = (np.empty((2, len(values)), dtype=np.uint64) for _ in range(2))
    _hash._bytes_hashes(offsets, data, dense, _hash._Scratch(), dense=True)
    _hash._bytes_hashes(offsets, data, flat, _hash._Scratch(), dense=False)
    assert np.array_equal(dense, flat)
    with mock.patch.object(_hash, "_WORDS", 3):  # a few words at a time
        few = np.empty_like(dense)
        _hash._bytes_hashes(offsets, data, few, _hash._Scratch())
    assert np.array_equal(dense, few)
    for i, v in enumerate(values):
        if v is not None:
            assert [int(dense[lane, i]) for lane in (0, 1)] == [
                _bytes_word(lane, v) for lane in (0, 1)
            ]


def test_one_long_string_among_short_ones_matches_the_scheme() -> None:
    # (the layout of every word of every string in one flat array, not a padded matrix)
    data = [(i, i, 1.0, "€" * 100 if i == 3 else "ab", "", i % 2 == 0, None) for i in range(20)]
    assert table_digest(_table(data)) == _reference_digest(_table(data))
