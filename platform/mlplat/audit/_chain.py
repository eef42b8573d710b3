"""The audit chain's arithmetic: canonical bodies, hashes, signed marks and the chunk scanner.

Kept free of pydantic and of the rest of mlplat so the hot paths (append, verify) cost a
string format and a SHA-256 per record, and forked verify workers start instantly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring as _esc  # type: ignore[attr-defined]
from typing import Any

_FIELDS = ("seq", "ts", "actor", "action", "target", "outcome", "reason", "details", "prev_hash")
# Sorted keys, no whitespace, UTF-8 (not \u-escaped) — byte-identical to
# json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
_BODY = ('{"action":%s,"actor":%s,"details":%s,"outcome":%s,"prev_hash":%s,"reason":%s,'
         '"seq":%d,"target":%s,"ts":%s}')
_SEQ_KEY = ',"seq":'
_PREV_KEY = ',"prev_hash":"'


def canonical_body(seq: int, ts: str, actor: str, action: str, target: str, outcome: str,
                   reason: str, details_json: str, prev_hash: str) -> str:
    """The canonical JSON of one record; ``details_json`` must already be canonical.

    Example:
        >>> canonical_body(1, "2026-01-01T00:00:00.000000+00:00", "a", "promote", "fraud/2",
        ...                "ok", "", "{}", "0" * 64)[:30]
        '{"action":"promote","actor":"a'
    """
    return _BODY % (_esc(action), _esc(actor), details_json, _esc(outcome), _esc(prev_hash),
                    _esc(reason), seq, _esc(target), _esc(ts))


def record_hash(row: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record's fields (``hash`` itself excluded).

    Canonical means sorted keys, no whitespace, UTF-8, so any process (or an auditor's own
    script) recomputes the same digest from the same values. It equals
    ``sha256(body)`` of the stored record.

    Example:
        >>> len(record_hash({"seq": 1, "ts": "2026-01-01T00:00:00+00:00", "actor": "a",
        ...     "action": "promote", "target": "fraud/2", "outcome": "ok", "reason": "",
        ...     "details": {}, "prev_hash": "0" * 64}))
        64
    """
    payload = {k: row[k] for k in _FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def body_seq(body: str) -> int:
    """The record's ``seq``, read from its canonical body without parsing all of it.

    ``seq`` is followed only by the string fields ``target`` and ``ts``, where a quote is
    always escaped, so the last ``,"seq":`` is the top-level key.
    """
    i = body.rindex(_SEQ_KEY) + len(_SEQ_KEY)
    return int(body[i:body.index(",", i)])


def body_prev(body: str) -> str:
    """The record's ``prev_hash`` (the last top-level occurrence, as for ``body_seq``)."""
    i = body.rindex(_PREV_KEY) + len(_PREV_KEY)
    return body[i:i + 64]


def key_id(key: bytes) -> str:
    """A short public fingerprint of the signing key (which key signed a mark)."""
    return hashlib.sha256(b"mlplat-audit-key-id|" + key).hexdigest()[:16]


def sign(key: bytes, kind: str, seq: int, digest: str, signed_at: str) -> str:
    """HMAC-SHA256 over ``kind|seq|hash|signed_at`` with the audit signing key."""
    msg = f"mlplat-audit|{kind}|{seq}|{digest}|{signed_at}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclass
class Chunk:
    """What scanning one contiguous range of records found.

    ``bad_offset`` is the position (0-based, within the range) of the first record that fails a
    check that needs nothing outside the range; ``problem`` may contain ``{expected}``, the
    record's expected seq, which only the caller knows.
    """

    count: int = 0
    first_seq: int = 0
    first_prev: str = ""
    last_seq: int = 0
    last_hash: str = ""
    bad_offset: int | None = None
    problem: str = ""
    checkpoints_matched: int = 0


def scan_chunk(rows: Iterable[tuple[str, str]], checkpoints: dict[int, str]) -> Chunk:
    """Check hashes, links, sequence and checkpoints of consecutive records.

    The first record's own seq and prev_hash are returned, not judged: the caller links ranges.
    """
    out = Chunk()
    sha = hashlib.sha256
    seq_key, seq_len, prev_key, prev_len = _SEQ_KEY, len(_SEQ_KEY), _PREV_KEY, len(_PREV_KEY)
    last_seq, last_hash = 0, ""
    i = -1
    for i, (body, digest) in enumerate(rows):
        try:
            computed = sha(body.encode("utf-8")).hexdigest()
        except (AttributeError, UnicodeError):
            computed = ""
        if computed != digest:
            out.bad_offset = i
            out.problem = (f"stored hash {str(digest)[:12]}… != recomputed {computed[:12]}…: "
                           "the record's fields were edited")
            break
        try:  # body_seq / body_prev, inlined: this loop runs a million times
            k = body.rindex(seq_key) + seq_len
            seq = int(body[k:body.index(",", k)])
            k = body.rindex(prev_key) + prev_len
            prev = body[k:k + 64]
        except ValueError:
            out.bad_offset, out.problem = i, "the record is not in canonical form: it was edited"
            break
        if i == 0:
            out.first_seq, out.first_prev = seq, prev
        else:
            if seq != last_seq + 1:
                out.bad_offset = i
                out.problem = (f"expected seq {{expected}} at this position, found seq {seq}: "
                               "record {expected} was deleted or moved, or a seq was edited")
                break
            if prev != last_hash:
                out.bad_offset = i
                out.problem = (f"prev_hash {prev[:12]}… does not match the previous record's "
                               f"hash {last_hash[:12]}…: a record before it was removed, "
                               "reordered or edited")
                break
        signed = checkpoints.get(seq)
        if signed is not None:
            if signed != digest:
                out.bad_offset = i
                out.problem = (f"a signed checkpoint says record {seq} has hash {signed[:12]}… "
                               f"but it has {digest[:12]}…: the log was rewritten from here or "
                               "earlier")
                break
            out.checkpoints_matched += 1
        last_seq, last_hash = seq, digest
    out.count = i + 1 if out.bad_offset is None else out.bad_offset
    out.last_seq, out.last_hash = last_seq, last_hash
    return out
