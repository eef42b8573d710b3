"""Point-in-time-correct training datasets on Ray Data, with a content-addressed manifest.

Ray Data has no as-of join, so it is built from parts it does have: the label set and every
feature view are mapped onto one unified schema with a side tag and a bucket number (a stable
hash of the entity key), ``groupby(bucket)`` routes all rows of an entity to one ``map_groups``
call, and that call runs the vectorised Arrow/numpy as-of kernel of :mod:`mlplat.data._asof`
(which matches on the entity keys itself). Grouping by bucket rather than by entity gives the
same rows; it calls the function a few dozen times instead of once per entity, so the per-call
fixed costs (Arrow takes, kernel set-up) stay small next to the work. Feature values of all
views share typed value columns ("slots") in the unified rows, which keeps them narrow.

Every input is checked on the driver (schemas and row counts come from parquet footers)
before any cluster time is spent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import DatasetManifest, FeatureSpec, FeatureViewRef
from mlplat.data._asof import ViewJoin, asof_indices, take_or_null
from mlplat.data._feast import check_views, load_definitions, resolve_app, view_version
from mlplat.data._hash import PartialDigest, content_sha256, row_hashes64, table_digest
from mlplat.data._storage import (
    copy_tree,
    delete_tree,
    exists,
    is_file,
    is_local,
    join,
    list_files,
    read_text,
    resolve,
    write_text,
)
from mlplat.errors import InfraError, NotFoundError, UserError, did_you_mean

if TYPE_CHECKING:
    from feast import FeatureView

MANIFEST = "manifest.json"
DATA_DIR = "data"
_SIDE = "__mlplat_side"
_TS = "__mlplat_ts"
_CREATED = "__mlplat_created"
_SLOT = "__mlplat_slot"
_TS_TYPE = pa.timestamp("ns", tz="UTC")
_BUCKET = "__mlplat_bucket"
_CREATED_NAME = "created_timestamp"
# Rows one as-of call handles at most on average; more rows → more buckets.
_ROWS_PER_BUCKET = 100_000


# --------------------------------------------------------------------------- checks on the driver


def _local(path: str) -> bool:
    return is_local(path)


def _open(path: str, what: str) -> pads.Dataset:
    fs, where = resolve(path)
    try:
        found = exists(fs, where)
    except OSError as exc:  # an unreachable object store, wrong credentials
        raise InfraError(f"Cannot reach {what} {path}: {exc}") from exc
    if not found:
        raise UserError(f"{what} not found: {path}. Pass an existing parquet file or folder.")
    try:
        return pads.dataset(where, format="parquet", filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{what} {path} is not readable as parquet: {exc}") from exc


def _require_columns(schema: pa.Schema, columns: list[str], path: str, what: str) -> None:
    for column in columns:
        if column not in schema.names:
            raise UserError(
                f"{what} {path} has no column '{column}'.{did_you_mean(column, schema.names)} "
                f"It has {schema.names}; add or rename the column, or fix app.yaml."
            )


def _require_aware(schema: pa.Schema, column: str, path: str, what: str) -> None:
    kind = schema.field(column).type
    if not pa.types.is_timestamp(kind):
        raise UserError(
            f"Column '{column}' of {what} {path} is {kind}, not a timestamp. Store event times "
            "as timezone-aware timestamps (pandas: pd.to_datetime(col, utc=True))."
        )
    if kind.tz is None:
        raise UserError(
            f"Column '{column}' of {what} {path} holds naive timestamps ({kind}). Write them "
            "timezone-aware (pandas: .dt.tz_localize('UTC')) so the as-of join cannot be off by "
            "a UTC offset."
        )


def _key_type(label: pa.DataType, view: pa.DataType, key: str, path: str) -> None:
    same_kind = (pa.types.is_integer(label) and pa.types.is_integer(view)) or (
        (pa.types.is_string(label) or pa.types.is_large_string(label))
        and (pa.types.is_string(view) or pa.types.is_large_string(view))
    )
    if label != view and not same_kind:
        raise UserError(
            f"Entity key '{key}' is {label} in the labels but {view} in {path}; store both with "
            "the same type."
        )


@dataclass(frozen=True)
class _Source:
    path: str
    timestamp_field: str
    created_column: str | None
    join: ViewJoin
    slots: tuple[str, ...]  # the unified column carrying each feature, in join.features order


@dataclass(frozen=True)
class Plan:
    """Everything the workers need, checked and typed on the driver (picklable)."""

    spec: FeatureSpec
    labels_path: str
    label_columns: tuple[str, ...]
    sources: tuple[_Source, ...]
    unified: pa.Schema
    output: pa.Schema
    num_buckets: int


def plan_dataset(
    app: AppConfig,
    views: dict[str, FeatureView],
    labels_path: str,
    min_buckets: int = 1,
    label_columns: list[str] | None = None,
) -> Plan:
    """Check the label set and every feature source and derive the schemas of the join.

    ``label_columns`` are the label-side columns carried through besides the entity keys and
    the timestamp (default: the spec's label and request features).

    Raises:
        UserError: a missing file or column, a naive timestamp, an empty label set, mismatched
            entity key types or a feature name used twice.
        NotFoundError: app.yaml names a feature view the Feast definitions lack.
    """
    spec = app.features
    check_views(app, views)
    keys, ts = list(spec.entity_keys), spec.timestamp_column
    labels = _open(labels_path, "Label set")
    label_cols = list(label_columns) if label_columns is not None else [
        spec.label,
        *spec.request_features,
    ]
    _require_columns(labels.schema, [*keys, ts, *label_cols], labels_path, "Label set")
    _require_aware(labels.schema, ts, labels_path, "label set")
    if labels.count_rows() == 0:
        raise UserError(
            f"Label set {labels_path} has no rows; a training dataset needs at least one label."
        )
    total_rows = labels.count_rows()
    taken = {*keys, ts, *label_cols}
    sources: list[_Source] = []
    view_fields: list[pa.Field] = []
    # Views share the shuffle's value columns ("slots"): the n-th feature of a given type of
    # every view travels in the same column, as only one side's values are set in a row. A row
    # is then as wide as the widest view, not all views together (bytes through the shuffle).
    slot_fields: dict[tuple[str, int], pa.Field] = {}
    for ref in spec.feature_views:
        view = views[ref.name]
        source = view.batch_source
        path = getattr(source, "path", None)
        if source is None or not path:
            raise UserError(
                f"Feature view '{ref.name}' has source {type(source).__name__}; build_dataset "
                "reads parquet FileSources only. Point the view at a FileSource."
            )
        what = f"Source of feature view '{ref.name}'"
        table = _open(path, what)
        ts_field = source.timestamp_field or ts
        created = source.created_timestamp_column or None
        _require_columns(table.schema, [*keys, ts_field, *ref.features], path, what)
        _require_aware(table.schema, ts_field, path, what)
        if created:
            _require_columns(table.schema, [created], path, what)
            _require_aware(table.schema, created, path, what)
        total_rows += table.count_rows()
        for k in keys:
            _key_type(labels.schema.field(k).type, table.schema.field(k).type, k, path)
        for f in ref.features:
            if f in taken:
                raise UserError(
                    f"Feature '{f}' of view '{ref.name}' collides with another column of the "
                    "dataset; rename it in the view (feature names must be unique per app)."
                )
            taken.add(f)
            view_fields.append(table.schema.field(f))
        seen: dict[str, int] = {}
        slots = []
        for f in ref.features:
            kind = table.schema.field(f).type
            n = seen[str(kind)] = seen.get(str(kind), -1) + 1
            slot = slot_fields.setdefault(
                (str(kind), n), pa.field(f"{_SLOT}{len(slot_fields)}", kind)
            )
            slots.append(slot.name)
        sources.append(
            _Source(
                path=path,
                timestamp_field=ts_field,
                created_column=created,
                join=ViewJoin(
                    ref.name,
                    tuple(ref.features),
                    pd.Timedelta(seconds=ref.ttl_s),
                    ts,
                    _CREATED_NAME,
                ),
                slots=tuple(slots),
            )
        )
    key_fields = [labels.schema.field(k) for k in keys]
    label_fields = [labels.schema.field(c) for c in label_cols]
    unified = pa.schema(
        [
            *key_fields,
            pa.field(_BUCKET, pa.int32()),
            pa.field(_SIDE, pa.int8()),
            pa.field(_TS, _TS_TYPE),
            pa.field(_CREATED, _TS_TYPE),
            *label_fields,
            *slot_fields.values(),
        ]
    )
    output = pa.schema(
        [
            *key_fields,
            pa.field(ts, _TS_TYPE),
            *label_fields,
            *view_fields,
            *(pa.field(s.join.ts_output, _TS_TYPE) for s in sources),
        ]
    )
    buckets = max(min_buckets, -(-total_rows // _ROWS_PER_BUCKET))
    return Plan(spec, labels_path, tuple(label_cols), tuple(sources), unified, output, buckets)


# --------------------------------------------------------------------------- worker functions


def bucket_of(keys: list[pa.ChunkedArray | pa.Array], num_buckets: int) -> pa.Array:
    """Stable bucket per row from its entity key values (same in every process and run)."""
    # The content hash's vectorised row hash over the key columns alone: a row's bucket
    # depends only on its key values (not on nulls elsewhere in its batch, nor on the integer
    # width), and composite keys mix fully.
    table = pa.table({f"k{j:03d}": k for j, k in enumerate(keys)})
    return pa.array((row_hashes64(table) % np.uint64(num_buckets)).astype(np.int32))


def _unify(
    batch: pa.Table, side: int, rename: dict[str, str], schema: pa.Schema, plan: Plan
) -> pa.Table:
    """Map one input's batch onto the unified schema (absent columns become typed nulls)."""
    n = batch.num_rows
    columns = []
    if side > 0:
        source = plan.sources[side - 1]
        rename = {**rename, **dict(zip(source.join.features, source.slots, strict=True))}
    by_target = {rename.get(name, name): name for name in batch.column_names}
    keys = [batch.column(by_target[k]).cast(schema.field(k).type) for k in plan.spec.entity_keys]
    for field in schema:
        if field.name == _BUCKET:
            columns.append(bucket_of(keys, plan.num_buckets))
        elif field.name == _SIDE:
            columns.append(pa.array(np.full(n, side, dtype=np.int8)))
        elif field.name in by_target:
            columns.append(batch.column(by_target[field.name]).cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def join_group(group: pa.Table, plan: Plan) -> pa.Table:
    """The as-of join of one bucket's rows (labels and every view) → output rows."""
    keys = list(plan.spec.entity_keys)
    side = group.column(_SIDE).to_numpy()
    labels = pa.array(np.flatnonzero(side == 0))
    label_keys = [group.column(k).take(labels) for k in keys]
    label_ts = group.column(_TS).take(labels)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        **dict(zip(keys, label_keys, strict=True)),
        plan.spec.timestamp_column: label_ts,
        **{c: group.column(c).take(labels) for c in plan.label_columns},
    }
    for i, source in enumerate(plan.sources, start=1):
        rows = pa.array(np.flatnonzero(side == i))
        view_ts = group.column(_TS).take(rows)
        features = [group.column(slot).take(rows) for slot in source.slots]
        ties = [group.column(_CREATED).take(rows)] if source.created_column else []
        picked = asof_indices(
            label_keys,
            label_ts,
            [group.column(k).take(rows) for k in keys],
            view_ts,
            [*ties, *features],
            int(source.join.ttl.value),
        )
        for name, values in zip(source.join.features, features, strict=True):
            columns[name] = take_or_null(values, picked)
        columns[source.join.ts_output] = take_or_null(view_ts, picked)
    return pa.Table.from_arrays(
        [columns[f.name].cast(f.type) for f in plan.output], schema=plan.output
    )




# --------------------------------------------------------------------------- driver


def _run_join(
    plan: Plan, timings: dict[str, float] | None = None
) -> tuple[object, str, int]:
    """Run the join on Ray Data; return the materialized dataset, its content SHA-256 and rows.

    ``timings``, if given, receives the seconds of each phase (``join``: read, shuffle and
    as-of join up to the materialized blocks; ``hash``: the content hash of those blocks).
    """
    import ray
    import ray.data
    from ray.data.context import ShuffleStrategy

    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS or a running local cluster, as `ray job submit` sets up
    # At least one bucket per CPU so every core of the cluster has a share of the join.
    cpus = int(ray.cluster_resources().get("CPU", 1))
    plan = replace(plan, num_buckets=max(plan.num_buckets, cpus))

    keys, ts = list(plan.spec.entity_keys), plan.spec.timestamp_column
    label_read = [*keys, ts, *plan.label_columns]
    inputs = [
        ray.data.read_parquet(plan.labels_path)
        .select_columns(label_read)
        .map_batches(
            _unify,  # type: ignore[arg-type]  # Ray's UDF type does not model fn_kwargs
            batch_format="pyarrow",
            fn_kwargs={"side": 0, "rename": {ts: _TS}, "schema": plan.unified, "plan": plan},
        )
    ]
    for i, s in enumerate(plan.sources, start=1):
        read = [
            *keys,
            s.timestamp_field,
            *([s.created_column] if s.created_column else []),
            *s.join.features,
        ]
        rename = {
            s.timestamp_field: _TS,
            **({s.created_column: _CREATED} if s.created_column else {}),
        }
        inputs.append(
            ray.data.read_parquet(s.path)
            .select_columns(list(dict.fromkeys(read)))
            .map_batches(
                _unify,  # type: ignore[arg-type]
                batch_format="pyarrow",
                fn_kwargs={"side": i, "rename": rename, "schema": plan.unified, "plan": plan},
            )
        )
    union = inputs[0].union(*inputs[1:]) if len(inputs) > 1 else inputs[0]
    # This dataset's own context copy: the default hash shuffle starts a fresh pool of
    # aggregator actors on every run (~20 s of the join measured here, even for 1k labels;
    # re-checked on Ray 2.58 with 2-4 partitions and aggregators: 26-48 s for 1M labels), the
    # sort-based shuffle runs as plain tasks (5-6 s for the same join then, ~3 s now).
    union.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    started = time.perf_counter()
    joined = (
        union.groupby(_BUCKET, num_partitions=plan.num_buckets)
        .map_groups(join_group, batch_format="pyarrow", fn_kwargs={"plan": plan})  # type: ignore[arg-type]
        .materialize()
    )
    joined_at = time.perf_counter()
    # One plain task per materialized block (zero-copy Arrow refs): a second Ray Data pass
    # over the blocks cost as much again in executor start-up as the hashing itself.
    digest = ray.remote(table_digest)
    partials = ray.get([digest.remote(block) for block in joined.to_arrow_refs()])
    total = sum(partials, PartialDigest())
    if timings is not None:
        timings["join"] = joined_at - started
        timings["hash"] = time.perf_counter() - joined_at
    return joined, content_sha256(plan.output, [total]), total.rows


def _target(cfg: PlatformConfig, app: AppConfig, output_dir: str | None) -> str | None:
    if output_dir is None:
        return None  # content-addressed: known once the hash is
    fs, where = resolve(output_dir)
    if list_files(fs, where):
        raise UserError(
            f"output_dir {output_dir} already exists and is not empty; choose a new folder or "
            "delete it (datasets are immutable once written)."
        )
    return where if is_local(output_dir) else output_dir.rstrip("/")


def build_dataset(
    cfg: PlatformConfig,
    app: AppConfig | str,
    labels_path: str,
    output_dir: str | None = None,
) -> DatasetManifest:
    """Join labels to the app's feature views as of each label's timestamp, on Ray Data.

    Args:
        cfg: Platform config (the storage root of the active profile).
        app: The app, or its name; its app.yaml ``features`` block is the feature spec.
        labels_path: Parquet file or folder with entity keys, a tz-aware timestamp, the label
            and the request features.
        output_dir: Where to write (a local folder or an ``s3://`` URI); defaults to
            ``<root>/datasets/<app>/<sha256[:12]>``.

    Returns:
        The manifest, also written as ``manifest.json`` next to the ``data/`` folder.

    Raises:
        UserError: invalid inputs (see :func:`plan_dataset`); nothing is written.
        NotFoundError: an unknown feature view.
        InfraError: the join ran but writing the dataset failed; nothing is left behind.

    Example:
        >>> m = build_dataset(cfg, "fraud", ".mlplat/raw/fraud/transactions.parquet")
        >>> ray.data.read_parquet(m.path).count() == m.row_count
        True
    """
    app = resolve_app(cfg, app)
    _, views = load_definitions(cfg, app)
    labels_path = labels_path if not _local(labels_path) else str(Path(labels_path).resolve())
    plan = plan_dataset(app, views, labels_path)
    target = _target(cfg, app, output_dir)
    joined, sha, rows = _run_join(plan)
    expected = _open(labels_path, "Label set").count_rows()
    if rows != expected:
        raise InfraError(f"The join produced {rows} rows for {expected} labels; not written.")
    if target is None:
        target = join(cfg.root(), "datasets", app.name, sha[:12])
        fs, where = resolve(target)
        if is_file(fs, join(where, MANIFEST)):
            return read_manifest(target)  # same content was built before; datasets are immutable
    versions = {ref.name: view_version(views[ref.name]) for ref in app.features.feature_views}
    spec = app.features.model_copy(
        update={
            "feature_views": [
                FeatureViewRef(**{**ref.model_dump(), "version": versions[ref.name]})
                for ref in app.features.feature_views
            ]
        }
    )
    manifest = DatasetManifest(
        path=join(target, DATA_DIR),
        row_count=rows,
        columns={f.name: str(f.type) for f in plan.output},
        feature_spec=spec,
        feature_view_versions=versions,
        source_paths=[labels_path, *(s.path for s in plan.sources)],
        content_sha256=sha,
        created_at=datetime.now(UTC),
    )
    _write_atomically(joined, manifest, target)
    return manifest


def _write_atomically(joined: object, manifest: DatasetManifest, target: str | Path) -> None:
    """Write the dataset so that it appears whole or not at all.

    Local folders: write into a hidden temp folder next to the target, then ``rename`` it into
    place (atomic on one filesystem). Object stores have no rename: write under a hidden temp
    prefix, copy the objects server-side to the target, then write ``manifest.json`` last — the
    manifest is the commit marker, and a target without one is never read as a dataset.
    """
    target = str(target)
    if is_local(target):
        _write_local(joined, manifest, Path(resolve(target)[1]))
    else:
        _write_object_store(joined, manifest, target)


def _write_local(joined: object, manifest: DatasetManifest, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        joined.write_parquet(str(tmp / DATA_DIR))  # type: ignore[attr-defined]
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        try:
            os.rename(tmp, target)
        except OSError:
            if (target / MANIFEST).is_file():  # a concurrent build of the same content won
                shutil.rmtree(tmp, ignore_errors=True)
                return
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise InfraError(f"Writing dataset to {target} failed: {exc}") from exc
        raise


def _write_object_store(joined: object, manifest: DatasetManifest, target: str) -> None:
    fs, where = resolve(target)
    parent, name = where.rsplit("/", 1)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_uri = target[: len(target) - len(where)] + tmp
    committed = False
    try:
        joined.write_parquet(join(tmp_uri, DATA_DIR))  # type: ignore[attr-defined]
        if is_file(fs, join(where, MANIFEST)):  # a concurrent build of the same content won
            committed = True
            return
        copy_tree(fs, join(tmp, DATA_DIR), join(where, DATA_DIR))
        write_text(fs, join(where, MANIFEST), manifest.model_dump_json(indent=2))
        committed = True
    except BaseException as exc:
        if isinstance(exc, OSError):
            raise InfraError(f"Writing dataset to {target} failed: {exc}") from exc
        raise
    finally:
        delete_tree(fs, tmp)
        if not committed:
            delete_tree(fs, join(where, DATA_DIR))


def read_manifest(path: str | os.PathLike[str]) -> DatasetManifest:
    """Load a dataset's manifest from its folder (or URI) or from the manifest.json path.

    Raises:
        NotFoundError: no manifest there.
        UserError: the file is not a valid DatasetManifest.

    Example:
        >>> read_manifest(m.path.rsplit("/data", 1)[0]).content_sha256 == m.content_sha256
        True
    """
    uri = str(path)
    fs, where = resolve(uri)
    file = where if where.endswith(MANIFEST) and is_file(fs, where) else join(where, MANIFEST)
    if not is_file(fs, file):
        raise NotFoundError(
            f"No dataset manifest at {file}. Pass a dataset folder (with {MANIFEST} and "
            f"{DATA_DIR}/) or the manifest file itself."
        )
    try:
        return DatasetManifest.model_validate(json.loads(read_text(fs, file)))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{file} is not a valid DatasetManifest: {exc}") from exc


def latest_dataset(cfg: PlatformConfig, app: str) -> str | None:
    """The newest dataset built for ``app`` (its folder), or None (also for object-store roots).

    Datasets live at ``<root>/datasets/<app>/<sha>/`` with a ``manifest.json``.

    Example:
        >>> latest_dataset(cfg, "fraud")   # doctest: +SKIP
        '.mlplat/datasets/fraud/3f2a…'
    """
    root = Path(cfg.root()) / "datasets" / app
    if "://" in cfg.root() or not root.is_dir():
        return None
    found = []
    for manifest in root.glob("*/manifest.json"):
        try:
            found.append((json.loads(manifest.read_text())["created_at"], str(manifest.parent)))
        except (OSError, ValueError, KeyError):
            continue  # a folder being written or a broken one is not a candidate
    return max(found)[1] if found else None
