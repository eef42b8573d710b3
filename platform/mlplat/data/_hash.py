"""Content hashes of datasets that do not depend on partitioning or row order.

A dataset's identity is ``content_sha256``: a SHA-256 over the schema, the row count and a
*multiset hash* of the rows — the sum of per-row 128-bit hashes modulo ``2**128``. The sum is the
same whichever blocks the rows sit in and in whatever order, yet a duplicated, dropped or
changed row changes it. Row hashes are computed column-wise with numpy (no per-row Python), a
block of rows at a time.

The scheme, ``v2`` (what the golden test in tests/unit/data/test_hash_properties.py pins, and
what its pure-Python reference implementation spells out):

* **Two lanes.** Lane A uses MurmurHash3's ``fmix64`` as ``mix``, lane B Stafford's Mix13 (the
  SplitMix64 finaliser); both are bijections on 64-bit words. Every constant ``C(...)`` is
  per lane: the first 8 bytes (big-endian) of SHA-256 of ``"mlplat.table_digest.v2/<lane>/..."``.
* **Cell words.** Columns are taken in name order (``j`` = position). A non-null cell becomes a
  64-bit word ``w`` by its column's *kind*: integers of any width → their int64 two's-complement
  bits (``uint64`` → its own bits), kind ``int``; booleans → 0/1, ``bool``; floats → widened
  exactly to float64, IEEE bits, every NaN as ``0x7ff8000000000000``, ``-0.0`` distinct from
  ``0.0``, ``float``; timestamps, dates, times, durations → the integer count in the column's own
  unit (the instant, free of timezone rendering), ``time``. Byte strings — strings as UTF-8
  (``str``), binary (``bytes``), decimals as Arrow's exact string (``decimal``) and anything else
  (lists, structs, maps, …) as a typed, length-prefixed encoding of the value (``nested``) — are
  cut into 8-byte little-endian words ``u_k`` (the last zero-padded), and
  ``w = (sum_k mix(u_k ^ P[k]) mod 2**64) ^ byte_length`` with ``P[k] = mix(k ^ C("word"))``.
  Dictionary arrays hash as their values, extension arrays as their storage.
* **Row hash.** ``acc = C("row")``; for each column ``j``:
  ``acc = mix(acc ^ (w ^ C("cell", j, kind)))``, or ``acc = mix(acc ^ C("null", j))`` for a null
  (Arrow validity) of any type. The chain is non-linear and ordered, so the same values in other
  columns, a moved null, or null vs ``""``/``0``/``False``/NaN all give other hashes; the kind in
  the constant tells int 1 from float 1.0 from ``"1"`` even before the schema does. The row's
  hash is ``acc_A * 2**64 + acc_B``.
* **Partial digest and identity.** :class:`PartialDigest` is (rows, sum of row hashes mod
  ``2**128``); ``+`` is associative and commutative. :func:`content_sha256` is SHA-256 of
  ``b"mlplat.table_digest/v2|"``, the JSON schema fingerprint (names and Arrow types in name
  order), ``b"|rows=<n>|"`` and the sum as 16 big-endian bytes.

It is deterministic: integer arithmetic modulo ``2**64`` in numpy and SHA-256 only — no Python
``hash()`` (randomised per process), no byte-order dependence — so every process and machine
gets the same value. It is not the v1 value (row-by-row SHA-256 summed mod ``2**256``): datasets
built before this scheme keep their recorded hash but rebuild under a new one.

What it is not: a cryptographic commitment. The mixing functions are public, unkeyed and
invertible, and a sum of 128-bit values is a linear multiset hash, so someone *trying* to build
two different datasets with the same ``content_sha256`` can do it cheaply (for example by
solving the invertible row chain, or a generalised-birthday search over the sum) — far more
cheaply than breaking SHA-256. It is a dataset-identity fingerprint: for data that is not
crafted against it, two different datasets share a hash only by a ~2**-128 accident. Do not use
it to authenticate data from a party you do not trust.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

_MOD = 1 << 128
_SCHEME = b"mlplat.table_digest/v2|"
_U64 = np.uint64
_LOW32 = _U64(0xFFFFFFFF)
_CANON_NAN = _U64(0x7FF8000000000000)
# Rows hashed at a time, and string words at a time: every temporary stays a few hundred KB
# and is reused (fresh multi-100-KB numpy temporaries cost more in page faults than the
# arithmetic on them). Neither changes the result.
_BLOCK = 1 << 14
_WORDS = 1 << 16
# _BYTE_MASKS[b]: the low b bytes of a little-endian word (b = 0..8)
_BYTE_MASKS = np.array([(1 << (8 * b)) - 1 for b in range(9)], dtype=_U64)

# The two lanes' finalisers, applied to (2, …) arrays (row 0 = lane A, row 1 = lane B):
# lane A is MurmurHash3's fmix64, lane B Stafford's Mix13 (the SplitMix64 finaliser).
_SH1 = np.array([33, 30], dtype=_U64)
_MUL1 = np.array([0xFF51AFD7ED558CCD, 0xBF58476D1CE4E5B9], dtype=_U64)
_SH2 = np.array([33, 27], dtype=_U64)
_MUL2 = np.array([0xC4CEB9FE1A85EC53, 0x94D049BB133111EB], dtype=_U64)
_SH3 = np.array([33, 31], dtype=_U64)


def _mix(x: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """Both lanes' bijective 64-bit finalisers, in place on a (2, …) uint64 array."""
    tmp = np.empty_like(x) if tmp is None else tmp
    shape = (2,) + (1,) * (x.ndim - 1)
    np.right_shift(x, _SH1.reshape(shape), out=tmp)
    x ^= tmp
    x *= _MUL1.reshape(shape)
    np.right_shift(x, _SH2.reshape(shape), out=tmp)
    x ^= tmp
    x *= _MUL2.reshape(shape)
    np.right_shift(x, _SH3.reshape(shape), out=tmp)
    x ^= tmp
    return x


@cache
def _const(*parts: object) -> np.ndarray:
    """Fixed per-lane 64-bit constants named by ``parts``, as a (2, 1) array (SHA-256 based,
    the same on every machine and in every process)."""
    out = np.empty((2, 1), dtype=_U64)
    for lane in (0, 1):
        label = "/".join(str(p) for p in ("mlplat.table_digest.v2", lane, *parts)).encode()
        out[lane, 0] = int.from_bytes(hashlib.sha256(label).digest()[:8], "big")
    out.flags.writeable = False
    return out


class _Scratch:
    """Reusable numpy buffers by name, for the temporaries of one ``table_digest`` call."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: Any = _U64) -> np.ndarray:
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self._buffers[name] = np.empty(max(size, 1), dtype=dtype)
        return buf[:size].reshape(shape)


def _encode(value: Any) -> bytes:
    """Typed, length-prefixed bytes of a Python value (for nested and unusual columns)."""
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
    data = repr(value).encode()
    return b"R" + struct.pack("<Q", len(data)) + data


def _bytes_hashes(
    offsets: np.ndarray, data: np.ndarray, out: np.ndarray, sc: _Scratch,
    dense: bool | None = None,
) -> None:
    """Per-lane 64-bit words, into ``out`` (2, n), of the byte strings
    ``data[offsets[i]:offsets[i+1]]``, ``_WORDS`` 8-byte words at a time.

    Each string is cut into 8-byte little-endian words ``u_k`` (the last one zero-padded); the
    result is ``(sum_k mix(u_k ^ P[k]) mod 2**64) ^ byte_length`` with per-lane positional keys
    ``P[k] = mix(k ^ C("word"))`` (the row chain mixes it further). ``dense`` forces a layout
    (tests); both give the same result.
    """
    n = len(offsets) - 1
    wcum = sc("wcum", (n + 1,), np.int64)
    wcum[0] = 0
    np.subtract(offsets[1:], offsets[:-1], out=wcum[1:])
    wcum[1:] += 7
    wcum[1:] >>= 3
    np.cumsum(wcum, out=wcum)
    start = 0
    while start < n:
        stop = int(np.searchsorted(wcum, wcum[start] + _WORDS, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        _bytes_block(offsets[start : stop + 1], data, out[:, start:stop], sc, dense)
        start = stop


def _bytes_block(
    offsets: np.ndarray, data: np.ndarray, out: np.ndarray, sc: _Scratch, dense: bool | None,
) -> None:
    n = len(offsets) - 1
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = sc("lengths", (n,), np.int64)
    np.subtract(offsets[1:], offsets[:-1], out=lengths)
    width = (int(lengths.max()) + 7) >> 3
    out[:] = 0
    if width:
        nwords = sc("nwords", (n,), np.int64)
        np.add(lengths, 7, out=nwords)
        nwords >>= 3
        total = int(nwords.sum())
        size = last - first
        padded = sc("bytes", (size + 8 * width + 8,), np.uint8)  # reads never run off
        padded[:size] = data[first:last]
        padded[size:] = 0
        # every 8-byte window of the bytes, read little-endian whatever the machine
        windows = np.ndarray((size + 8 * width,), dtype="<u8", buffer=padded, strides=(1,))
        positional = _mix(np.arange(width, dtype=_U64)[None, :] ^ _const("word"))  # (2, width)
        if dense if dense is not None else n * width <= 2 * total + 64:
            k = 8 * np.arange(width, dtype=np.int64)[:, None]  # (width, n) layout below
            left = sc("left", (width, n), np.int64)  # bytes of each string from word k on
            np.subtract(lengths[None, :], k, out=left)
            pos = sc("pos", (width, n), np.int64)
            np.add(offsets[None, :-1] - first, k, out=pos)
            words = _gather(windows, pos, sc("words", (width, n)))
            np.clip(left, 0, 8, out=left)
            words &= np.take(_BYTE_MASKS, left, out=sc("masks", (width, n)), mode="clip")
            terms = sc("terms", (2, width, n))
            np.bitwise_xor(words[None, :, :], positional[:, :, None], out=terms)
            _mix(terms, sc("terms_tmp", (2, width, n)))
            if not left.all():  # words past a string's end count for nothing
                past = np.equal(left, 0, out=sc("past", (width, n), bool))
                np.copyto(terms, _U64(0), where=past[None, :, :])
            np.sum(terms, axis=1, dtype=_U64, out=out)  # wraps modulo 2**64, as meant
        else:  # a few long strings among short ones: every word of every string, flat
            wcum = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(nwords, out=wcum[1:])
            k = np.arange(total, dtype=np.int64) - np.repeat(wcum[:-1], nwords)
            left = np.repeat(lengths, nwords) - 8 * k  # ≥ 1
            words = _gather(windows, np.repeat(offsets[:-1] - first, nwords) + 8 * k,
                            np.empty(total, dtype=_U64))
            words &= _BYTE_MASKS[np.minimum(left, 8)]
            terms = _mix(words[None, :] ^ positional[:, k])
            sums = np.zeros((2, total + 1), dtype=_U64)
            np.cumsum(terms, axis=1, dtype=_U64, out=sums[:, 1:])
            np.subtract(sums[:, wcum[1:]], sums[:, wcum[:-1]], out=out)  # modulo 2**64
    out ^= lengths.view(_U64)


def _gather(windows: np.ndarray, pos: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``windows[pos]`` as native uint64, into ``out``."""
    if windows.dtype == out.dtype:  # little-endian machines
        return np.take(windows, pos, out=out, mode="clip")
    out[...] = windows[pos]
    return out


def _binary_hashes(arr: pa.Array, sc: _Scratch) -> np.ndarray:
    """``_bytes_hashes`` of a string/binary array (views and fixed-size binary included)."""
    if _is_view(arr.type, "string"):
        arr = arr.cast(pa.string())
    elif _is_view(arr.type, "binary"):
        arr = arr.cast(pa.binary())
    t, n = arr.type, len(arr)
    out = sc("strings", (2, n))
    if n == 0:
        return out
    buffers = arr.buffers()
    if pa.types.is_fixed_size_binary(t):
        offsets = (np.arange(n + 1, dtype=np.int64) + arr.offset) * t.byte_width
        data = buffers[1]
    else:
        large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        raw_offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32,
                                    count=arr.offset + n + 1)[arr.offset :]
        offsets = sc("offsets", (n + 1,), np.int64)
        offsets[:] = raw_offsets
        data = buffers[2]
    raw = np.zeros(0, np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)
    _bytes_hashes(offsets, raw, out, sc)
    return out


def _values(arr: pa.Array, dtype: str) -> np.ndarray:
    """The data buffer of a fixed-width array as numpy (zero-copy; null slots hold junk)."""
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return np.zeros(len(arr), dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=arr.offset + len(arr))[arr.offset :]


def _ints(arr: pa.Array, sc: _Scratch) -> np.ndarray:
    """Integers (and temporal counts) of any width as the bits of their int64 value
    (``uint64`` as its own bits)."""
    t = arr.type
    signed = not (pa.types.is_integer(t) and pa.types.is_unsigned_integer(t))
    values = _values(arr, f"{'i' if signed else 'u'}{t.bit_width // 8}")
    if values.dtype.itemsize == 8:
        return values.view(_U64)
    out = sc("ints", (len(values),), np.int64)
    out[:] = values
    return out.view(_U64)


def _chunk_words(arr: pa.Array, sc: _Scratch) -> tuple[str, np.ndarray]:
    """The column kind and its canonical words: (n,) for fixed-width kinds, the same in both
    lanes, or (2, n) per-lane words for byte-string kinds. Null slots hold anything (the
    caller masks them). The arrays may be scratch: use them before the next call."""
    t = arr.type
    if pa.types.is_integer(t):
        return "int", _ints(arr, sc)
    if pa.types.is_boolean(t):
        return "bool", _bits(arr.buffers()[1], arr.offset, len(arr)).view(np.uint8)
    if pa.types.is_floating(t):
        f = _values(arr, f"f{t.bit_width // 8}")
        if f.dtype != np.float64:  # float16/float32: widened exactly
            wide = sc("floats", (len(f),), np.float64)
            wide[:] = f
            f = wide
        nan = np.isnan(f, out=sc("nan", (len(f),), bool))
        if not nan.any():
            return "float", f.view(_U64)
        bits = sc("float_bits", (len(f),))
        bits[:] = f.view(_U64)
        np.copyto(bits, _CANON_NAN, where=nan)
        return "float", bits
    if pa.types.is_temporal(t) and not pa.types.is_interval(t):
        # timestamp, date, time, duration: the integer count in the column's own unit
        return "time", _ints(arr, sc)
    if pa.types.is_null(t):
        return "null", np.zeros(len(arr), dtype=_U64)
    if pa.types.is_decimal(t):
        return "decimal", _binary_hashes(arr.cast(pa.string()), sc)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(t, "string"):
        return "str", _binary_hashes(arr, sc)
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t) or _is_view(t, "binary")):
        return "bytes", _binary_hashes(arr, sc)
    # lists, structs, maps, unions, intervals, …: typed bytes per value (a Python loop, but
    # only over this column; none of the dataset builder's columns take this path)
    encoded = pa.array([_encode(v) for v in arr.to_pylist()], type=pa.large_binary())
    return "nested", _binary_hashes(encoded, sc)


def _is_view(t: pa.DataType, what: str) -> bool:
    check = getattr(pa.types, f"is_{what}_view", None)  # pyarrow ≥ 16
    return bool(check and check(t))


def _validity(arr: pa.Array) -> np.ndarray | None:
    """Where ``arr`` holds values (None: everywhere)."""
    if arr.null_count == 0:
        return None
    buf = arr.buffers()[0]
    if buf is None:  # the null type
        return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return _bits(buf, arr.offset, len(arr))


def _bits(buf: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """Bits ``offset .. offset+n`` of an Arrow bitmap (LSB first), as a bool array."""
    first, last = offset >> 3, (offset + n + 7) >> 3
    raw = np.frombuffer(buf, dtype=np.uint8, count=last)[first:]
    bits = np.unpackbits(raw, bitorder="little")
    return bits[offset - 8 * first : offset - 8 * first + n].view(bool)


def _canonical(column: pa.ChunkedArray, sc: _Scratch) -> tuple[str, np.ndarray, np.ndarray | None]:
    """Kind, words (see ``_chunk_words``) and validity mask (None if no nulls) of a column."""
    kind, parts, valid = "null", [], []
    chunks = column.chunks
    for chunk in chunks:
        if isinstance(chunk.type, pa.ExtensionType):
            chunk = chunk.storage
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        kind, words = _chunk_words(chunk, sc)
        parts.append(words if len(chunks) == 1 else words.copy())  # scratch is reused
        valid.append(_validity(chunk))
    if not parts:
        return kind, np.zeros(0, dtype=_U64), None
    words = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    if all(v is None for v in valid):
        return kind, words, None
    if len(valid) == 1:
        return kind, words, valid[0]
    masks = [np.ones(p.shape[-1], dtype=bool) if v is None else v
             for p, v in zip(parts, valid, strict=True)]
    return kind, words, np.concatenate(masks)


def _sum_u64(x: np.ndarray) -> int:
    """Exact sum of a uint64 array, as a Python int."""
    total = 0
    step = 1 << 31  # 2**31 values < 2**32 sum below 2**64: no uint64 overflow
    for i in range(0, len(x), step):
        part = x[i : i + step]
        total += int(np.bitwise_and(part, _LOW32).sum(dtype=_U64))
        total += int((part >> _U64(32)).sum(dtype=_U64)) << 32
    return total


@dataclass(frozen=True)
class PartialDigest:
    """Digest of some rows of a dataset: combine partials with ``+``, in any grouping.

    ``total`` is the sum of the rows' 128-bit hashes modulo ``2**128`` (so at most 32 hex
    digits; wider values written by callers are reduced on addition).
    """

    rows: int = 0
    total: int = 0

    def __add__(self, other: PartialDigest) -> PartialDigest:
        return PartialDigest(self.rows + other.rows, (self.total + other.total) % _MOD)


def _row_hash_blocks(table: pa.Table, block: int) -> Iterator[np.ndarray]:
    """Every row's 128-bit hash, ``block`` rows at a time, as (2, rows) uint64 arrays: lane A
    (the high 64 bits) and lane B. Each array is reused for the next block: use it at once."""
    n = table.num_rows
    columns = [table.column(name) for name in sorted(table.column_names)]
    sc = _Scratch()
    for start in range(0, n, block):
        m = min(block, n - start)
        acc, tmp, x = sc("acc", (2, m)), sc("tmp", (2, m)), sc("x", (2, m))
        acc[:] = _const("row")
        for j, column in enumerate(columns):
            kind, words, valid = _canonical(column.slice(start, m), sc)
            if valid is None:
                acc ^= words
                acc ^= _const("cell", j, kind)
            else:
                np.bitwise_xor(words, _const("cell", j, kind), out=x)
                np.copyto(x, _const("null", j), where=~valid)
                acc ^= x
            _mix(acc, tmp)
        yield acc


def row_hashes64(table: pa.Table) -> np.ndarray:
    """A stable 64-bit hash of every row (lane A of the row hash below), as uint64.

    The same in every process and run; a row's hash depends only on its own values (and the
    column names' order), so it can route rows, e.g. to shuffle buckets.
    """
    out = np.empty(table.num_rows, dtype=_U64)
    for start, rows in zip(range(0, table.num_rows, _BLOCK), _row_hash_blocks(table, _BLOCK),
                           strict=True):
        out[start : start + rows.shape[1]] = rows[0]
    return out


def table_digest(table: pa.Table) -> PartialDigest:
    """The partial digest of the rows of ``table`` (columns hashed in name order).

    Example:
        >>> table_digest(pa.table({"a": [1, 2]})) == table_digest(pa.table({"a": [2, 1]}))
        True
    """
    total = 0
    for rows in _row_hash_blocks(table, _BLOCK):
        total += (_sum_u64(rows[0]) << 64) + _sum_u64(rows[1])
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
    h.update(_SCHEME)
    h.update(header)
    h.update(b"|rows=%d|" % combined.rows)
    h.update((combined.total % _MOD).to_bytes(16, "big"))
    return h.hexdigest()
