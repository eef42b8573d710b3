"""The functions Ray Data runs (unify → bucket → as-of join), driven here without Ray."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlplat.data._dataset import (
    _BUCKET,
    _CREATED,
    _TS,
    Plan,
    _unify,
    bucket_of,
    join_group,
    plan_dataset,
)
from mlplat.data._feast import load_definitions
from mlplat.data._hash import content_sha256, table_digest


def _unified(plan: Plan) -> pa.Table:
    spec = plan.spec
    label_cols = [*spec.entity_keys, spec.timestamp_column, *plan.label_columns]
    parts = [
        _unify(
            pq.read_table(plan.labels_path, columns=label_cols),
            0,
            {spec.timestamp_column: _TS},
            plan.unified,
            plan,
        )
    ]
    for i, s in enumerate(plan.sources, start=1):
        rename = {s.timestamp_field: _TS, s.created_column: _CREATED}
        parts.append(_unify(pq.read_table(s.path), i, rename, plan.unified, plan))
    return pa.concat_tables(parts)


def test_bucketed_join_equals_one_big_join_and_never_looks_ahead(fraud_home: dict) -> None:
    app = fraud_home["app"]
    _, views = load_definitions(fraud_home["cfg"], app)
    plan = replace(
        plan_dataset(app, views, str(fraud_home["paths"]["transactions"])), num_buckets=5
    )
    table = _unified(plan)
    whole = join_group(table, plan)
    parts = [join_group(table.filter(pc.equal(table[_BUCKET], b)), plan) for b in range(5)]
    assert (
        sum(p.num_rows for p in parts)
        == whole.num_rows
        == pq.read_metadata(plan.labels_path).num_rows
    )
    assert content_sha256(plan.output, [table_digest(p) for p in parts]) == content_sha256(
        plan.output, [table_digest(whole)]
    )
    df = whole.to_pandas()
    for view in ("account_profile", "account_txn_stats"):
        assert (
            df[f"{view}__event_timestamp"].dropna()
            <= df.loc[df[f"{view}__event_timestamp"].notna(), "event_timestamp"]
        ).all()
    # Activity features are the hour-boundary snapshot before the transaction, within 1 day.
    lag = df["event_timestamp"] - df["account_txn_stats__event_timestamp"]
    assert lag.dropna().max() <= pd.Timedelta(days=1)
    assert df["txn_count_7d"].notna().mean() > 0.8


def test_bucket_of_is_stable_and_ignores_nulls_elsewhere_in_the_batch() -> None:
    with_null = bucket_of([pa.array([5, None, 7], pa.int64())], 16).to_pylist()
    without = bucket_of([pa.array([5, 7], pa.int64())], 16).to_pylist()
    assert [with_null[0], with_null[2]] == without
    composite = bucket_of([pa.array(["a", "a"]), pa.array([1, 2])], 1_000).to_pylist()
    assert composite[0] != composite[1]
