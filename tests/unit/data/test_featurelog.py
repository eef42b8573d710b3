"""The served-feature log: sampled, off the request path, exact values, drops counted."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mlplat.data import FeatureLogger
from mlplat.data._featurelog import ROW_ID, log_schema

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SCHEMA = log_schema(
    [pa.field("account_id", pa.int64())],
    "event_timestamp",
    [pa.field("txn_count_1h", pa.int64()), pa.field("avg_amount_7d", pa.float64())],
)


def _vectors(n: int) -> tuple[list[dict], list[dict]]:
    entities = [{"account_id": i} for i in range(n)]
    vectors = [
        {"txn_count_1h": i, "avg_amount_7d": None if i % 3 == 0 else i * 0.1} for i in range(n)
    ]
    return entities, vectors


def test_every_row_logged_exactly_at_rate_one(tmp_path: Path) -> None:
    log = FeatureLogger(str(tmp_path), SCHEMA, "event_timestamp", 1.0, flush_rows=7)
    entities, vectors = _vectors(20)
    log.offer(NOW, entities[:10], vectors[:10])
    log.offer(NOW, entities[10:], vectors[10:])
    assert log.flush()
    table = pq.read_table(tmp_path).sort_by("account_id")
    assert table.num_rows == log.rows_written == 20 and log.files_written >= 2
    assert table.column("avg_amount_7d").to_pylist() == [v["avg_amount_7d"] for v in vectors]
    assert set(table.column("event_timestamp").to_pylist()) == {NOW}
    assert len(set(table.column(ROW_ID).to_pylist())) == 20


def test_sampling_keeps_about_the_configured_share(tmp_path: Path) -> None:
    log = FeatureLogger(str(tmp_path), SCHEMA, "event_timestamp", 0.25, rng=random.Random(1))
    entities, vectors = _vectors(1)
    for _ in range(2000):
        log.offer(NOW, entities, vectors)
    assert log.flush()
    assert 400 < log.rows_written == log.rows_offered < 600
    off = FeatureLogger(str(tmp_path / "off"), SCHEMA, "event_timestamp", 0.0)
    off.offer(NOW, entities, vectors)
    assert off.flush() and off.rows_offered == 0 and not (tmp_path / "off").exists()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = FeatureLogger(str(tmp_path), SCHEMA, "event_timestamp", 1.0, queue_size=2, flush_rows=1)
    gate = threading.Event()
    real_write = log._write
    log._write = lambda batches: (gate.wait(10), real_write(batches))  # a slow disk
    entities, vectors = _vectors(1)
    for _ in range(50):  # returns at once although the writer is stuck
        log.offer(NOW, entities, vectors)
    assert log.rows_dropped > 0
    gate.set()
    assert log.flush()
    assert log.rows_written + log.rows_dropped == 50
