"""The hash-chained, append-only audit log of privileged actions.

Every record carries the SHA-256 of its own canonical JSON (all fields, ``prev_hash``
included), and ``prev_hash`` is the previous record's hash (``"0" * 64`` for the first). Editing,
deleting or reordering any record therefore breaks the chain at that record, which ``verify``
names. The store is chosen by ``profiles.<name>.audit.type`` in platform.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mlplat.config import PlatformConfig, PostgresAudit, SqliteAudit
from mlplat.contracts.v1 import AuditEvent
from mlplat.errors import InfraError, UserError

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record."""

OUTCOMES = ("ok", "denied", "failed")
_FIELDS = ("seq", "ts", "actor", "action", "target", "outcome", "reason", "details", "prev_hash")


class AuditVerification(BaseModel):
    """Result of recomputing the whole hash chain.

    Example:
        >>> AuditLog(cfg).verify().ok
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool = Field(description="True when every record is intact and in sequence.")
    records: int = Field(ge=0, description="Records read from the store.")
    first_bad_seq: int | None = Field(
        default=None, description="Sequence number of the first record that fails (None when ok)."
    )
    problem: str = Field(default="", description="What is wrong with that record, for a person.")
    head_hash: str = Field(default=GENESIS_HASH, description="Hash of the last good record.")


def record_hash(row: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record's fields (``hash`` itself excluded).

    Canonical means sorted keys, no whitespace, UTF-8, so any process (or an auditor's own
    script) recomputes the same digest from the same values.

    Example:
        >>> len(record_hash({"seq": 1, "ts": "2026-01-01T00:00:00+00:00", "actor": "a",
        ...     "action": "promote", "target": "fraud/2", "outcome": "ok", "reason": "",
        ...     "details": {}, "prev_hash": GENESIS_HASH}))
        64
    """
    payload = {k: row[k] for k in _FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AuditStore(Protocol):
    """Where audit rows live. Implementations must serialise appends across processes."""

    def append(self, build: Callable[[int, str], dict[str, Any]]) -> dict[str, Any]:
        """Atomically read the head (last seq, last hash), call ``build`` and persist its row."""
        ...

    def rows(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Rows in insertion order with ``seq > since_seq`` (``details`` as stored JSON text)."""
        ...


class SqliteAuditStore:
    """Audit rows in one SQLite file; ``BEGIN IMMEDIATE`` makes concurrent appenders queue.

    Rows have a physical ``id`` separate from ``seq`` so that an edited or swapped ``seq`` is
    seen as out of sequence rather than silently re-sorted.
    """

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            seq INTEGER NOT NULL UNIQUE,
            ts TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
    """

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            self._connect()

    def _connect(self) -> sqlite3.Connection:
        # A connection inherited through fork() must not be used by the child: reopen per pid.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            # WAL lets readers (verify, events) run while another process appends; FULL
            # fsyncs every commit so an acknowledged audit record survives a power cut.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(self._SCHEMA)
        except sqlite3.Error as exc:
            raise InfraError(
                f"Cannot open the audit log at {self.path}: {exc}. Check that the folder is "
                "writable and on a local disk (SQLite WAL does not work over NFS)."
            ) from exc
        conn.row_factory = sqlite3.Row
        self._conn, self._pid = conn, os.getpid()
        return conn

    def append(self, build: Callable[[int, str], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    last = conn.execute(
                        "SELECT seq, hash FROM audit_log ORDER BY id DESC LIMIT 1"
                    ).fetchone()
                    row = build(last["seq"] if last else 0, last["hash"] if last else GENESIS_HASH)
                    conn.execute(
                        "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, reason,"
                        " details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (row["seq"], row["ts"], row["actor"], row["action"], row["target"],
                         row["outcome"], row["reason"], row["details_json"], row["prev_hash"],
                         row["hash"]),
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise InfraError(
                    f"Audit append to {self.path} failed: {exc}. The action was not recorded; "
                    "retry it."
                ) from exc
            return row

    def rows(self, since_seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            conn = self._connect()
            try:
                cur = conn.execute(
                    "SELECT seq, ts, actor, action, target, outcome, reason, details, prev_hash,"
                    " hash FROM audit_log WHERE seq > ? ORDER BY id", (since_seq,)
                )
                return [dict(r) for r in cur.fetchall()]
            except sqlite3.Error as exc:
                raise InfraError(f"Cannot read the audit log at {self.path}: {exc}.") from exc


def _open_store(cfg: PlatformConfig) -> AuditStore:
    backend = cfg.active_profile().audit
    if isinstance(backend, SqliteAudit):
        return SqliteAuditStore(cfg.local_path(backend.path))
    if isinstance(backend, PostgresAudit):
        raise UserError(
            f"Profile '{cfg.active_profile_name()}' keeps the audit log in PostgreSQL "
            f"({backend.dsn}), which this release does not implement yet (a later issue). "
            "Use a profile whose audit.type is 'sqlite' (e.g. MLPLAT_PROFILE=local)."
        )
    raise UserError(f"Unsupported audit store type: {backend!r}.")  # pragma: no cover


class AuditLog:
    """Append-only, tamper-evident log of privileged actions (promote, override, rollback …).

    There is deliberately no update or delete method: corrections are new records.

    Args:
        cfg: Platform config; the active profile's ``audit`` picks the store.
        clock: Seconds since the epoch, injectable for tests.
        store: Use this store instead of the one the profile names (tests, tooling).

    Raises:
        UserError: the active profile's audit store is not implemented (PostgreSQL).
        InfraError: the store cannot be opened.

    Example:
        >>> log = AuditLog(cfg)
        >>> ev = log.append("alice", "promote", "fraud/3", reason="canary green")
        >>> log.verify().ok
        True
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        clock: Callable[[], float] | None = None,
        store: AuditStore | None = None,
    ) -> None:
        self._clock = clock or time.time
        self._store = store if store is not None else _open_store(cfg)
        self.retention_days = cfg.slos.governance.audit_retention_days

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
        outcome: str = "ok",
    ) -> AuditEvent:
        """Append one record, chained to the current head, and return it.

        Args:
            actor: Who acted (a person or a service identity).
            action: What they did, e.g. ``promote``, ``rollback``, ``override``.
            target: What it was done to, e.g. ``fraud/3``.
            reason: Why, in words (required by policy for overrides).
            details: Extra JSON-serialisable facts (weights, gate results …).
            outcome: ``ok``, ``denied`` or ``failed``.

        Returns:
            The stored ``AuditEvent`` with its ``seq`` and ``hash``.

        Raises:
            UserError: an empty actor/action/target, an unknown outcome, or details that are
                not JSON (NaN, sets, objects).
            InfraError: the store refused the write; the action was not recorded.

        Example:
            >>> AuditLog(cfg).append("ic-oncall", "override", "fraud/3",
            ...                      reason="INC-42", details={"skipped": "shadow"}).seq
            1
        """
        for name, value in (("actor", actor), ("action", action), ("target", target)):
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"Audit {name} must be a non-empty string, got {value!r}.")
        if outcome not in OUTCOMES:
            raise UserError(f"Audit outcome must be one of {list(OUTCOMES)}, got {outcome!r}.")
        details = dict(details or {})
        try:
            details_json = json.dumps(details, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"Audit details must be plain JSON (str, number, bool, null, list, dict; no NaN): "
                f"{exc}. Convert values with str() before appending."
            ) from exc
        # Round-trip so the hashed value is exactly what verify() will read back (tuples → lists).
        details = json.loads(details_json)

        def build(last_seq: int, last_hash: str) -> dict[str, Any]:
            ts = datetime.fromtimestamp(self._clock(), tz=UTC).isoformat()
            row: dict[str, Any] = {
                "seq": last_seq + 1, "ts": ts, "actor": actor, "action": action,
                "target": target, "outcome": outcome, "reason": reason, "details": details,
                "prev_hash": last_hash, "details_json": details_json,
            }
            row["hash"] = record_hash(row)
            return row

        row = self._store.append(build)
        return AuditEvent(
            seq=row["seq"], ts=datetime.fromisoformat(row["ts"]), actor=actor, action=action,
            target=target, outcome=outcome, reason=reason, details=details,  # type: ignore[arg-type]
            prev_hash=row["prev_hash"], hash=row["hash"],
        )

    def events(self, since_seq: int = 0) -> list[AuditEvent]:
        """Records with ``seq > since_seq`` in order (run ``verify`` to trust them).

        Example:
            >>> [e.action for e in AuditLog(cfg).events()]
            ['promote', 'rollback']
        """
        out = []
        for r in self._store.rows(since_seq):
            out.append(AuditEvent(
                seq=r["seq"], ts=datetime.fromisoformat(r["ts"]), actor=r["actor"],
                action=r["action"], target=r["target"], outcome=r["outcome"],
                reason=r["reason"], details=json.loads(r["details"]), prev_hash=r["prev_hash"],
                hash=r["hash"],
            ))
        return out

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record (``(0, GENESIS_HASH)`` when empty).

        Publish it somewhere the log's writers cannot edit (a ticket, MLflow, a signed
        message): the chain alone cannot reveal records cut off its tail.

        Example:
            >>> AuditLog(cfg).head()[0]
            2
        """
        rows = self._store.rows(0)
        return (rows[-1]["seq"], rows[-1]["hash"]) if rows else (0, GENESIS_HASH)

    def verify(self, expected_head: tuple[int, str] | None = None) -> AuditVerification:
        """Recompute every hash and link; name the first record that fails.

        Args:
            expected_head: A ``(seq, hash)`` from ``head()`` published earlier; when given, the
                log must still contain that record, which also catches truncation of the tail.

        Returns:
            ``AuditVerification`` with ``ok`` and, when broken, ``first_bad_seq`` and ``problem``.

        Example:
            >>> v = AuditLog(cfg).verify()
            >>> (v.ok, v.records, v.first_bad_seq)
            (True, 2, None)
        """
        rows = self._store.rows(0)
        prev = GENESIS_HASH
        for expected_seq, r in enumerate(rows, start=1):
            problem = _check_row(r, expected_seq, prev)
            if problem:
                return AuditVerification(ok=False, records=len(rows), first_bad_seq=expected_seq,
                                         problem=problem, head_hash=prev)
            prev = r["hash"]
        if expected_head is not None:
            seq, digest = expected_head
            if seq > len(rows):
                return AuditVerification(
                    ok=False, records=len(rows), first_bad_seq=len(rows) + 1, head_hash=prev,
                    problem=f"the log ends at seq {len(rows)} but record {seq} was published; "
                            f"records {len(rows) + 1}..{seq} were removed",
                )
            if seq >= 1 and rows[seq - 1]["hash"] != digest:
                return AuditVerification(
                    ok=False, records=len(rows), first_bad_seq=seq, head_hash=prev,
                    problem=f"record {seq} has hash {rows[seq - 1]['hash'][:12]}… but "
                            f"{digest[:12]}… was published for it; the log was rewritten",
                )
        return AuditVerification(ok=True, records=len(rows), head_hash=prev)


def _check_row(r: dict[str, Any], expected_seq: int, prev: str) -> str:
    """Why row ``r`` breaks the chain at position ``expected_seq``, or ``""`` if it does not."""
    if r["seq"] != expected_seq:
        return (f"expected seq {expected_seq} at position {expected_seq}, found seq {r['seq']!r}: "
                f"record {expected_seq} was deleted or moved, or a seq was edited")
    if r["prev_hash"] != prev:
        return (f"prev_hash {str(r['prev_hash'])[:12]}… does not match the previous record's hash "
                f"{prev[:12]}…: a record before it was removed, reordered or edited")
    try:
        details = json.loads(r["details"])
        computed = record_hash({**r, "details": details})
    except (TypeError, ValueError) as exc:
        return f"fields cannot be hashed ({exc}): the record was edited"
    if computed != r["hash"]:
        return (f"stored hash {str(r['hash'])[:12]}… != recomputed {computed[:12]}…: "
                "the record's fields were edited")
    return ""
