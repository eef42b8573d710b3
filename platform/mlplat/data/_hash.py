"""Content hashes of datasets that do not depend on partitioning or row order.

Each row is encoded canonically (column by column, typed, nulls explicit) and hashed with
SHA-256; a dataset's digest is the SHA-256 of its schema, its row count and the sum of its row
digests modulo 2**256. The sum is a multiset hash: it is the same whichever blocks the rows sit
in and in whatever order, yet a duplicated, dropped or changed row changes it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

_MOD = 1 << 256


def _encode(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"B1" if value else b"B0"
    if isinstance(value, int):
        return b"I" + str(value).encode()
    if isinstance(value, float):
        # float.hex is exact and distinguishes -0.0; every NaN encodes the same.
        return b"F" + (b"nan" if value != value else value.hex().encode())
    if isinstance(value, str):
        data = value.encode()
        return b"S" + struct.pack("<Q", len(data)) + data
    if isinstance(value, bytes):
        return b"Y" + struct.pack("<Q", len(value)) + value
    if isinstance(value, list | tuple):
        return b"L" + struct.pack("<Q", len(value)) + b"".join(_encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted(value.items())
        return (
            b"D"
            + struct.pack("<Q", len(items))
            + b"".join(_encode(k) + _encode(v) for k, v in items)
        )
    return b"R" + repr(value).encode()


def _column_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    # Timestamps and dates as integers: exact at any unit, and free of timezone rendering.
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = column.cast(pa.int64())
    elif pa.types.is_time(column.type) or pa.types.is_duration(column.type):
        column = column.cast(pa.int64())
    elif pa.types.is_decimal(column.type):
        column = column.cast(pa.string())
    return column.to_pylist()


@dataclass(frozen=True)
class PartialDigest:
    """Digest of some rows of a dataset: combine partials with ``+``, in any grouping."""

    rows: int = 0
    total: int = 0

    def __add__(self, other: PartialDigest) -> PartialDigest:
        return PartialDigest(self.rows + other.rows, (self.total + other.total) % _MOD)


def table_digest(table: pa.Table) -> PartialDigest:
    """The partial digest of the rows of ``table`` (columns hashed in name order).

    Example:
        >>> table_digest(pa.table({"a": [1, 2]})) == table_digest(pa.table({"a": [2, 1]}))
        True
    """
    names = sorted(table.column_names)
    columns = [_column_values(table.column(n)) for n in names]
    total = 0
    for row in zip(*columns, strict=True):
        encoded = b"\x1f".join(_encode(v) for v in row)
        total += int.from_bytes(hashlib.sha256(encoded).digest(), "big")
    return PartialDigest(table.num_rows, total % _MOD)


def schema_fingerprint(schema: pa.Schema) -> list[list[str]]:
    """Column name → Arrow type string, in name order (what the content hash commits to)."""
    return [[f.name, str(f.type)] for f in sorted(schema, key=lambda f: f.name)]


def content_sha256(schema: pa.Schema, partials: Iterable[PartialDigest]) -> str:
    """Hex SHA-256 of a dataset from its schema and the partial digests of all its rows.

    Example:
        >>> t = pa.table({"a": [1, 2, 3]})
        >>> one = content_sha256(t.schema, [table_digest(t)])
        >>> two = content_sha256(t.schema, [table_digest(t.slice(0, 1)), table_digest(t.slice(1))])
        >>> one == two
        True
    """
    combined = sum(partials, PartialDigest())
    header = json.dumps(schema_fingerprint(schema), separators=(",", ":")).encode()
    h = hashlib.sha256()
    h.update(header)
    h.update(b"|rows=%d|" % combined.rows)
    h.update(combined.total.to_bytes(32, "big"))
    return h.hexdigest()
