"""The point-in-time (as-of) join of labels to feature views, on pandas frames.

This is the whole semantics of a training dataset; the Ray Data layer only routes every row of
one entity to the same call. For each label row and each feature view it picks the view row with

* the same entity key values,
* ``label_ts - ttl <= feature_ts <= label_ts`` (both ends inclusive, as Feast does),
* the greatest ``feature_ts``; among rows with that ``feature_ts`` the greatest
  ``created_timestamp`` (a later write corrects an earlier one; a missing created timestamp
  loses to any present one); rows tied on both are ordered by their feature values so the
  result never depends on input order,

and yields nulls when no row qualifies. Label rows with a null entity key or timestamp are
kept, with null features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

_ROW = "__mlplat_row"
_ON = "__mlplat_on"


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


def _utc_ns(s: pd.Series) -> pd.Series:
    # merge_asof needs identical key dtypes on both sides; normalise every clock to ns UTC.
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _latest_per_timestamp(frame: pd.DataFrame, view: ViewJoin, keys: list[str]) -> pd.DataFrame:
    """One row per (entity, feature_ts): the latest write, deterministic under any input order."""
    order = [*keys, view.timestamp_column]
    if view.created_column and view.created_column in frame:
        order.append(view.created_column)
    order += [f for f in view.features if f not in order]
    # na_position="first": a row without a created timestamp loses to one that has it.
    frame = frame.sort_values(order, kind="stable", na_position="first")
    return frame.drop_duplicates(subset=[*keys, view.timestamp_column], keep="last")


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
    left = labels.copy()
    left[_ROW] = np.arange(len(left))
    left[_ON] = _utc_ns(left[timestamp_column])
    joinable = left[keys].notna().all(axis=1) & left[_ON].notna()
    out = left[joinable].sort_values(_ON, kind="stable")
    for view, frame in views:
        cols = [*keys, view.timestamp_column, *view.features]
        if view.created_column and view.created_column in frame:
            cols.append(view.created_column)
        right = frame[list(dict.fromkeys(cols))].dropna(subset=[*keys, view.timestamp_column])
        right = right.assign(**{view.timestamp_column: _utc_ns(right[view.timestamp_column])})
        right = _latest_per_timestamp(right, view, keys)
        right = pd.DataFrame(
            {
                **{k: right[k] for k in keys},
                _ON: right[view.timestamp_column],
                **{f: right[f] for f in view.features},
                view.ts_output: right[view.timestamp_column],
            }
        ).sort_values(_ON, kind="stable")
        for k in keys:  # merge_asof's `by` requires identical key dtypes
            if right[k].dtype != out[k].dtype:
                right[k] = right[k].astype(out[k].dtype)
        out = pd.merge_asof(
            out,
            right,
            on=_ON,
            by=keys,
            direction="backward",
            tolerance=view.ttl,
            allow_exact_matches=True,
        )
    added = [c for view, _ in views for c in (*view.features, view.ts_output)]
    rest = left[~joinable]
    if len(rest):
        filler = out.iloc[:0].reindex(range(len(rest)))  # typed nulls for the added columns
        rest = pd.concat(
            [rest.reset_index(drop=True), filler[added].reset_index(drop=True)], axis=1
        )
        out = pd.concat([out, rest], ignore_index=True) if len(out) else rest
    out = out.sort_values(_ROW, kind="stable").drop(columns=[_ROW, _ON])
    return out.reset_index(drop=True)[[*labels.columns, *added]]
