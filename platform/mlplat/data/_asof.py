"""The point-in-time (as-of) join of labels to feature views, vectorised on Arrow/numpy.

This is the whole semantics of a training dataset; the Ray Data layer only routes every row of
one entity to the same call. For each label row and each feature view it picks the view row with

* the same entity key values,
* ``label_ts - ttl <= feature_ts <= label_ts`` (both ends inclusive, as Feast does),
* the greatest ``feature_ts``; among rows with that ``feature_ts`` the greatest
  ``created_timestamp`` (a later write corrects an earlier one; a missing created timestamp
  loses to any present one); rows tied on both are ordered by their feature values (Arrow's
  order, nulls first) so the result never depends on input order,

and yields nulls when no row qualifies. Label rows with a null entity key or timestamp are
kept, with null features.

How (:func:`asof_indices`, no per-row Python and no pandas): entity keys become dense integer
ids by hashing against the view's distinct keys (``index_in``), and ``id * base + t`` (``t``:
the time's offset from the view's earliest, or its rank among the view's distinct times when the
offsets would overflow) is one int64 per row whose order is (entity, time). The view rows are
sorted on it once (ties on the same entity and time resolved by an Arrow sort of just those
rows), and every label finds its row with one binary search. :func:`asof_join` is the same
kernel on pandas frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_PACK = "__mlplat_pack"
_NS = pa.timestamp("ns", tz="UTC")


@dataclass(frozen=True)
class ViewJoin:
    """How to join one feature view: its name, features, TTL and timestamp column names.

    ``created_column`` may be None when the view has no created timestamp.
    """

    name: str
    features: tuple[str, ...]
    ttl: pd.Timedelta
    timestamp_column: str = "event_timestamp"
    created_column: str | None = "created_timestamp"

    @property
    def ts_output(self) -> str:
        """Output column carrying the event time of the joined feature row."""
        return f"{self.name}__{self.timestamp_column}"


Column: TypeAlias = pa.Array | pa.ChunkedArray


def _array(column: Column) -> pa.Array:
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _valid(column: pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _epoch_ns(column: pa.Array) -> np.ndarray:
    """Nanoseconds since the epoch of a timestamp array (null slots hold 0)."""
    ns = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
    return np.asarray(pc.fill_null(ns, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b:
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if (pa.types.is_string(a) or pa.types.is_large_string(a)) and (
        pa.types.is_string(b) or pa.types.is_large_string(b)
    ):
        return pa.large_string()
    return b


def _ids(values: pa.Array, distinct: pa.Array) -> np.ndarray:
    """Position of each value in ``distinct`` (-1: absent or null)."""
    found = pc.index_in(values, value_set=distinct)
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _key_ids(
    label_keys: Sequence[pa.Array], view_keys: Sequence[pa.Array]
) -> tuple[np.ndarray, np.ndarray]:
    """Dense int64 entity ids, equal for equal (composite) keys: (labels, view rows).

    View rows must have no null key. A label whose key is null or absent from the view gets -1.
    """
    label_ids = view_ids = np.zeros(0, dtype=np.int64)
    for j, (lab, view) in enumerate(zip(label_keys, view_keys, strict=True)):
        kind = _common_type(lab.type, view.type)
        lab, view = lab.cast(kind), view.cast(kind)
        distinct = pc.unique(view)
        v, lo = _ids(view, distinct), _ids(lab, distinct)
        if j == 0:
            label_ids, view_ids = lo, v
            continue
        # mixed radix, then back to dense ids so a third key cannot overflow int64
        combined_view = view_ids * len(distinct) + v
        combined_label = np.where((label_ids < 0) | (lo < 0), -1, label_ids * len(distinct) + lo)
        distinct = pc.unique(pa.array(combined_view))
        view_ids = _ids(pa.array(combined_view), distinct)
        label_ids = _ids(pa.array(combined_label), distinct)
    return label_ids, view_ids


def _sortable(column: pa.Array) -> pa.Array:
    """The column itself where Arrow can sort it, else typed bytes of each value (nested)."""
    t = column.type
    if pa.types.is_nested(t) or pa.types.is_dictionary(t) or pa.types.is_interval(t):
        from mlplat.data._hash import _encode

        return pa.array(
            [None if v is None else _encode(v) for v in column.to_pylist()], pa.large_binary()
        )
    return column


def _pack(
    view_ids: np.ndarray, vts: np.ndarray, label_ids: np.ndarray, lts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """One int64 per row ordered by (entity id, time): ``id * base + t`` with ``t`` in
    ``[0, base)``, where view time ``<=`` label time exactly when the view's ``t`` is ``<=`` the
    label's. Returns (view packs, label packs, base).

    ``t`` is the offset from the view's earliest time (labels clipped into the range) when
    ``ids * base`` fits in int64, else the rank among the view's distinct times.
    """
    first, span = int(vts.min()), int(vts.max()) - int(vts.min())
    ids = int(view_ids.max()) + 1
    if (span + 2) * ids < 1 << 62:
        base = span + 2
        view_t = vts - (first - 1)  # 1 .. span + 1
        label_t = np.clip(lts, first - 1, first + span) - (first - 1)  # 0: before any view row
    else:
        times = np.sort(np.asarray(pc.unique(pa.array(vts)).to_numpy(), dtype=np.int64))
        base = len(times) + 1
        view_t = np.searchsorted(times, vts, side="left") + 1
        label_t = np.searchsorted(times, lts, side="right")
    return view_ids * base + view_t, label_ids * base + label_t, base


def asof_indices(
    label_keys: Sequence[Column],
    label_ts: Column,
    view_keys: Sequence[Column],
    view_ts: Column,
    view_ties: Sequence[Column],
    ttl_ns: int,
) -> np.ndarray:
    """For every label row, the index of the view row the as-of join picks, or -1 for none.

    Args:
        label_keys: The labels' entity key columns (composite keys: several).
        label_ts: The labels' timestamps (any unit; compared as instants).
        view_keys: The view's entity key columns, in the same order.
        view_ts: The view's event timestamps.
        view_ties: Columns ordering rows with the same entity and event time, most significant
            first (the created timestamp, then the feature values); the greatest wins, nulls
            lose.
        ttl_ns: The view's TTL in nanoseconds (``label_ts - feature_ts <= ttl_ns``).

    Returns:
        int64 indices into the view rows, one per label row (-1: no row qualifies).

    Example:
        >>> asof_indices([pa.array([1, 2])], ts(["10:00", "10:00"]), [pa.array([1, 1])],
        ...              ts(["09:00", "09:30"]), [], ttl_ns=3600 * 10**9)
        array([ 1, -1])
    """
    lkeys = [_array(k) for k in label_keys]
    lts_arr, vts_arr = _array(label_ts), _array(view_ts)
    n = len(lts_arr)
    out = np.full(n, -1, dtype=np.int64)
    # View rows without a key or a time can never match: leave them out.
    usable = _valid(vts_arr)
    for k in view_keys:
        usable &= _valid(_array(k))
    rows = np.flatnonzero(usable)
    if n == 0 or len(rows) == 0:
        return out
    keep = None if len(rows) == len(usable) else pa.array(rows)
    vkeys = [_array(k) if keep is None else _array(k).take(keep) for k in view_keys]
    vts_arr = vts_arr if keep is None else vts_arr.take(keep)
    label_ids, view_ids = _key_ids(lkeys, vkeys)
    lts, vts = _epoch_ns(lts_arr), _epoch_ns(vts_arr)
    joinable = (label_ids >= 0) & _valid(lts_arr)
    view_pack, label_pack, base = _pack(view_ids, vts, label_ids, lts)
    # Not stable: rows that tie on (entity, time) are put in order below.
    order = np.argsort(view_pack)
    packed = view_pack[order]
    last = np.empty(len(packed), dtype=bool)
    np.not_equal(packed[1:], packed[:-1], out=last[:-1])
    last[-1] = True
    first = np.empty_like(last)
    first[0] = True
    first[1:] = last[:-1]
    tied = ~(first & last)
    if tied.any() and view_ties:
        # Several rows for one entity and time: put the winner last in its run.
        at = order[tied]
        table = pa.table(
            {
                _PACK: packed[tied],
                **{
                    f"t{i}": _sortable(_array(c).take(pa.array(rows[at])))
                    for i, c in enumerate(view_ties)
                },
            }
        )
        keys = [(name, "ascending", "at_start") for name in table.column_names]
        fine = pc.sort_indices(table, sort_keys=keys).to_numpy()
        order[tied] = at[fine]
    winners, winner_pack = order[last], packed[last]
    lab = np.flatnonzero(joinable)
    pos = np.searchsorted(winner_pack, label_pack[lab], side="right") - 1
    hit = pos >= 0
    pos = np.where(hit, pos, 0)
    hit &= winner_pack[pos] // base == label_ids[lab]  # same entity (else a smaller id's row)
    chosen = winners[pos]
    hit &= lts[lab] - vts[chosen] <= ttl_ns
    out[lab[hit]] = rows[chosen[hit]]
    return out


def take_or_null(column: Column, indices: np.ndarray) -> pa.Array:
    """``column[indices]`` with nulls where an index is -1."""
    return _array(column).take(pa.array(indices, mask=indices < 0))


def _arrow(series: pd.Series) -> pa.Array:
    return pa.Array.from_pandas(series.reset_index(drop=True))


def _utc_ns(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def asof_join(
    labels: pd.DataFrame,
    views: Sequence[tuple[ViewJoin, pd.DataFrame]],
    entity_keys: Sequence[str],
    timestamp_column: str = "event_timestamp",
) -> pd.DataFrame:
    """Join each label row to every feature view as of the label's timestamp.

    Args:
        labels: Entity keys, ``timestamp_column`` and any other columns (kept as they are).
        views: For each view, its join spec and its rows (entity keys, the view's timestamp
            and created columns, its features).
        entity_keys: Columns identifying the entity; composite keys are matched on all.
        timestamp_column: The label's event-time column.

    Returns:
        ``labels`` in its original row order with, per view, the view's features and a
        ``<view>__<timestamp>`` column holding the event time of the row that was used.

    Example:
        >>> v = ViewJoin("stats", ("n",), pd.Timedelta("1D"))
        >>> asof_join(labels, [(v, stats)], ["account_id"]).columns.tolist()
        ['account_id', 'event_timestamp', 'n', 'stats__event_timestamp']
    """
    keys = list(entity_keys)
    out = labels.reset_index(drop=True).copy()
    label_keys = [_arrow(labels[k]) for k in keys]
    label_ts = pa.array(_utc_ns(labels[timestamp_column]), _NS)
    added: list[str] = []
    for view, frame in views:
        frame = frame.reset_index(drop=True)
        event = _utc_ns(frame[view.timestamp_column])
        ties = []
        if view.created_column and view.created_column in frame:
            ties.append(pa.array(_utc_ns(frame[view.created_column]), _NS))
        ties += [_arrow(frame[f]) for f in view.features]
        picked = asof_indices(
            label_keys,
            label_ts,
            [_arrow(frame[k]) for k in keys],
            pa.array(event, _NS),
            ties,
            int(view.ttl.value),
        )
        # reindex: -1 is no row, so a miss becomes NaN/NaT (ints widen, as a left join does)
        for f in view.features:
            out[f] = frame[f].reindex(picked).set_axis(out.index)
        out[view.ts_output] = event.reindex(picked).set_axis(out.index)
        added += [*view.features, view.ts_output]
    return out[[*labels.columns, *added]]
