"""The served-feature log: what the serving path actually fed the model, for skew detection.

The request thread only draws a sample and puts a reference on a bounded queue (never
blocks; a full queue counts a drop). A daemon thread turns the queue into parquet files under
``<root>/feature_log/<app>/`` — local or ``s3://`` through pyarrow filesystems — one file per
flush (every ``flush_rows`` rows or ``flush_interval_s`` seconds, whichever comes first).

Each row holds the entity keys, ``event_timestamp`` (the request time the online store was
read at, which is also the time its TTLs were judged at), a ``request_row_id`` and the exact
value served for every feature — so the log is itself a label set the offline as-of join can
recompute (see :mod:`mlplat.data._skew`).
"""

from __future__ import annotations

import atexit
import queue
import random
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlplat.data._storage import join, resolve

ROW_ID = "request_row_id"
_TS_TYPE = pa.timestamp("ns", tz="UTC")


def log_uri(root: str, app: str) -> str:
    """Where an app's served-feature log lives: ``<root>/feature_log/<app>``."""
    return join(root, "feature_log", app)


@dataclass
class _Batch:
    request_ts: datetime
    entities: Sequence[dict[str, Any]]
    vectors: Sequence[dict[str, Any]]


class FeatureLogger:
    """Samples served feature vectors and writes them off the request path.

    Args:
        uri: Folder or URI to write parquet files into.
        schema: Columns of a log row: entity keys, ``timestamp_column``, :data:`ROW_ID`, features.
        timestamp_column: Name of the request-time column (the app's event-time column).
        sample_rate: Share of served rows to log, 0..1.
        queue_size: Batches waiting for the writer at most; more are dropped and counted.
        flush_rows: Write a file once this many rows are waiting.
        flush_interval_s: ... or once the oldest waiting row is this old.
        rng: Random source of the sampling (tests pass a seeded one).

    Example:
        >>> log = FeatureLogger("/tmp/log", schema, "event_timestamp", sample_rate=1.0)
        >>> log.offer(now, [{"account_id": 1}], [{"credit_limit": 900.0}])
        >>> log.flush()
        >>> log.rows_written
        1
    """

    def __init__(
        self,
        uri: str,
        schema: pa.Schema,
        timestamp_column: str,
        sample_rate: float,
        *,
        queue_size: int = 10_000,
        flush_rows: int = 1_000,
        flush_interval_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.uri = uri
        self.schema = schema
        self.sample_rate = sample_rate
        self._ts = timestamp_column
        self._fs, self._path = resolve(uri)
        self._queue: queue.Queue[_Batch | threading.Event] = queue.Queue(maxsize=queue_size)
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._rng = rng or random.Random()
        self.rows_offered = 0
        self.rows_dropped = 0
        self.rows_written = 0
        self.files_written = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="mlplat-feature-log", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    # ------------------------------------------------------------------ request path

    def offer(
        self,
        request_ts: datetime,
        entities: Sequence[dict[str, Any]],
        vectors: Sequence[dict[str, Any]],
    ) -> None:
        """Sample rows of one served batch for logging; never blocks, never raises."""
        if self.sample_rate <= 0 or not entities:
            return
        if self.sample_rate < 1:
            keep = [i for i in range(len(entities)) if self._rng.random() < self.sample_rate]
            if not keep:
                return
            entities = [entities[i] for i in keep]
            vectors = [vectors[i] for i in keep]
        self.rows_offered += len(entities)
        try:
            self._queue.put_nowait(_Batch(request_ts, entities, vectors))
        except queue.Full:
            self.rows_dropped += len(entities)

    # ------------------------------------------------------------------ writer thread

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Block until everything offered so far is written (tests, shutdown)."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def _run(self) -> None:
        pending: list[_Batch] = []
        rows = 0
        while True:
            try:
                item = self._queue.get(timeout=self._flush_interval_s)
            except queue.Empty:
                item = None
            if isinstance(item, _Batch):
                pending.append(item)
                rows += len(item.entities)
                if rows < self._flush_rows:
                    continue
            if pending:
                self._write(pending)
                pending, rows = [], 0
            if isinstance(item, threading.Event):
                item.set()

    def _write(self, batches: list[_Batch]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for batch in batches:
            for entity, vector in zip(batch.entities, batch.vectors, strict=True):
                for name in self.schema.names:
                    if name == self._ts:
                        columns[name].append(batch.request_ts)
                    elif name == ROW_ID:
                        columns[name].append(uuid.uuid4().hex)
                    elif name in entity:
                        columns[name].append(entity[name])
                    else:
                        columns[name].append(vector.get(name))
        try:
            table = pa.Table.from_pydict(columns, schema=self.schema)
            name = f"part-{batches[0].request_ts.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
            self._fs.create_dir(self._path, recursive=True)
            pq.write_table(table, join(self._path, f"{name}.parquet"), filesystem=self._fs)
        except Exception:  # a full disk or a down object store must not kill the writer
            self.write_errors += 1
            self.rows_dropped += sum(len(b.entities) for b in batches)
            return
        self.rows_written += table.num_rows
        self.files_written += 1


def log_schema(
    entity_fields: Sequence[pa.Field], timestamp_column: str, feature_fields: Sequence[pa.Field]
) -> pa.Schema:
    """Schema of a feature-log file: entity keys, request time, row id, the served features."""
    return pa.schema(
        [
            *entity_fields,
            pa.field(timestamp_column, _TS_TYPE),
            pa.field(ROW_ID, pa.string()),
            *feature_fields,
        ]
    )
