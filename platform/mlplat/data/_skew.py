"""Training–serving skew: recompute logged online feature vectors offline and compare.

The serving path logs the exact vector it served with the request time (``_featurelog``).
Here the log is treated as a label set: the same Ray Data as-of join that builds training
datasets recomputes every logged feature as of the logged request time, and each value is
compared with what was served. A mismatch is a value that differs (floats beyond a relative
tolerance of 1e-9), or a null on one side only.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.data._feast import load_definitions, resolve_app
from mlplat.data._featurelog import ROW_ID, log_uri
from mlplat.data._storage import delete_tree, join, list_files, resolve
from mlplat.errors import UserError


class FeatureSkew(BaseModel):
    """Mismatch counts of one feature over the compared rows."""

    compared: int = Field(ge=0, description="Logged rows compared.")
    mismatches: int = Field(ge=0, description="Rows whose served value differs from offline.")
    mismatch_rate: float = Field(ge=0, le=1)
    served_null_only: int = Field(0, ge=0, description="Served null, offline had a value.")
    offline_null_only: int = Field(0, ge=0, description="Served a value, offline had none.")


class SkewExample(BaseModel):
    """One served value that the offline recomputation disagrees with."""

    feature: str
    entity: dict[str, Any]
    request_ts: datetime
    served: Any
    offline: Any
    relative_difference: float | None = Field(
        description="|served - offline| / max(|offline|, 1e-12); None when one side is null."
    )


class SkewReport(BaseModel):
    """Per-feature mismatch rates between served and offline-recomputed feature vectors."""

    app: str
    log: str = Field(description="Where the served-feature log was read from.")
    rows: int = Field(ge=0, description="Logged rows compared.")
    since: datetime | None = None
    until: datetime | None = None
    features: dict[str, FeatureSkew]
    rows_with_mismatch: int = Field(ge=0)
    worst: list[SkewExample] = Field(description="Largest disagreements first.")
    created_at: datetime

    @property
    def ok(self) -> bool:
        """True when every logged value matched its offline recomputation."""
        return self.rows_with_mismatch == 0


def _same(served: Any, offline: Any, rel_tol: float) -> bool:
    if served is None or offline is None:
        return served is None and offline is None
    if isinstance(served, float | int) and isinstance(offline, float | int):
        return math.isclose(float(served), float(offline), rel_tol=rel_tol, abs_tol=1e-12)
    return bool(served == offline)


def _relative(served: Any, offline: Any) -> float | None:
    if served is None or offline is None:
        return None
    try:
        return abs(float(served) - float(offline)) / max(abs(float(offline)), 1e-12)
    except (TypeError, ValueError):
        return math.inf


def _read_log(uri: str, ts: str, since: datetime | None, until: datetime | None) -> pa.Table:
    fs, path = resolve(uri)
    files = [f for f in list_files(fs, path) if f.endswith(".parquet")]
    if not files:
        raise UserError(
            f"No served-feature log under {uri}. The serving path writes it when "
            "data.feature_log_sample_rate in platform.yaml is above 0 and it uses "
            "mlplat.data.ServingFeatureClient."
        )
    table = pads.dataset(files, format="parquet", filesystem=fs).to_table()
    mask = None
    for bound, op in ((since, pc.greater_equal), (until, pc.less)):
        if bound is not None:
            cond = op(table.column(ts), pa.scalar(bound, table.schema.field(ts).type))
            mask = cond if mask is None else pc.and_(mask, cond)
    return table.filter(mask) if mask is not None else table


def skew_report(
    cfg: PlatformConfig,
    app: AppConfig | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    log_dir: str | None = None,
    max_examples: int = 10,
    rel_tol: float = 1e-9,
) -> SkewReport:
    """Recompute logged served features offline (Ray Data as-of join) and report mismatches.

    Args:
        cfg: Platform config (storage root, Feast definitions).
        app: The app, or its name.
        since: Only requests at or after this time (tz-aware).
        until: Only requests before this time (tz-aware).
        log_dir: The served-feature log; defaults to ``<root>/feature_log/<app>``.
        max_examples: How many of the worst mismatches to include.
        rel_tol: Relative tolerance for numeric values.

    Returns:
        Per-feature mismatch counts and rates, and the worst examples.

    Raises:
        UserError: no log, no logged rows in the window, or a naive bound.

    Example:
        >>> report = skew_report(load_config(), "fraud")
        >>> report.features["avg_amount_7d"].mismatch_rate
        0.0
    """
    from mlplat.data._dataset import _run_join, plan_dataset

    for name, bound in (("since", since), ("until", until)):
        if bound is not None and bound.tzinfo is None:
            raise UserError(f"{name}={bound.isoformat()} is naive; pass a timezone-aware time.")
    app = resolve_app(cfg, app)
    spec = app.features
    keys, ts = list(spec.entity_keys), spec.timestamp_column
    uri = log_dir or log_uri(cfg.root(), app.name)
    log = _read_log(uri, ts, since, until)
    if log.num_rows == 0:
        raise UserError(
            f"The served-feature log {uri} has no rows between {since} and {until}; widen the "
            "window or check that the serving path is logging."
        )
    _, views = load_definitions(cfg, app)
    # The log slice becomes a label set the dataset join reads like any other.
    scratch = join(cfg.root(), "tmp", f"skew-{uuid.uuid4().hex[:8]}")
    fs, scratch_path = resolve(scratch)
    try:
        fs.create_dir(scratch_path, recursive=True)
        labels = join(scratch, "log.parquet")
        pq.write_table(log.select([*keys, ts, ROW_ID]), resolve(labels)[1], filesystem=fs)
        plan = plan_dataset(app, views, labels, label_columns=[ROW_ID])
        joined, _, _ = _run_join(plan)
        import ray

        tables = ray.get(joined.to_arrow_refs())  # type: ignore[attr-defined]
        offline_table = pa.concat_tables(tables) if tables else plan.output.empty_table()
    finally:
        delete_tree(fs, scratch_path)
    return _compare(app, uri, log, offline_table, since, until, max_examples, rel_tol)


def _compare(
    app: AppConfig,
    uri: str,
    log: pa.Table,
    offline: pa.Table,
    since: datetime | None,
    until: datetime | None,
    max_examples: int,
    rel_tol: float,
) -> SkewReport:
    spec = app.features
    keys, ts = list(spec.entity_keys), spec.timestamp_column
    features = [f for v in spec.feature_views for f in v.features if f in log.column_names]
    by_id = {rid: i for i, rid in enumerate(offline.column(ROW_ID).to_pylist())}
    served_cols = {f: log.column(f).to_pylist() for f in features}
    offline_cols = {f: offline.column(f).to_pylist() for f in features}
    ids = log.column(ROW_ID).to_pylist()
    entity_cols = {k: log.column(k).to_pylist() for k in keys}
    times = log.column(ts).to_pylist()
    stats = {f: {"mismatches": 0, "served_null_only": 0, "offline_null_only": 0} for f in features}
    bad_rows: set[int] = set()
    examples: list[SkewExample] = []
    for i, rid in enumerate(ids):
        j = by_id[rid]
        for f in features:
            served, recomputed = served_cols[f][i], offline_cols[f][j]
            if _same(served, recomputed, rel_tol):
                continue
            stats[f]["mismatches"] += 1
            if served is None:
                stats[f]["served_null_only"] += 1
            elif recomputed is None:
                stats[f]["offline_null_only"] += 1
            bad_rows.add(i)
            examples.append(
                SkewExample(
                    feature=f,
                    entity={k: entity_cols[k][i] for k in keys},
                    request_ts=times[i],
                    served=served,
                    offline=recomputed,
                    relative_difference=_relative(served, recomputed),
                )
            )
    examples.sort(
        key=lambda e: math.inf if e.relative_difference is None else e.relative_difference,
        reverse=True,
    )
    n = log.num_rows
    return SkewReport(
        app=app.name,
        log=uri,
        rows=n,
        since=since,
        until=until,
        features={
            f: FeatureSkew(compared=n, mismatch_rate=s["mismatches"] / n, **s)
            for f, s in stats.items()
        },
        rows_with_mismatch=len(bad_rows),
        worst=examples[:max_examples],
        created_at=datetime.now(UTC),
    )
