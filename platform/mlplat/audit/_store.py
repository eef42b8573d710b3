"""Where audit records live: SQLite (local profile), PostgreSQL (prod profile), memory (tests).

A record is stored as its canonical JSON ``body`` plus ``hash = sha256(body)``; the columns
people query (``seq``, ``ts``, ``action``, ``target``) are *generated* from the body by the
database, so they can never disagree with what was hashed. Signed marks (the head, periodic
checkpoints and the purge base) live in ``audit_marks``. Both SQL stores refuse ``UPDATE`` of a
record and ``DELETE`` of one younger than the retention period with a trigger, so even a
client that bypasses mlplat cannot quietly rewrite history (a database owner can still drop the
trigger — which ``verify`` then catches through the hash chain and the signatures).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlplat.errors import InfraError, UserError

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record."""

MARK_KINDS = ("head", "checkpoint", "base")


@dataclass(frozen=True)
class Mark:
    """A signed statement "record ``seq`` has hash ``hash``".

    ``head`` is rewritten by every append (so a cut tail is seen), ``checkpoint`` rows are kept
    every N records and on demand, ``base`` is where the chain starts after a purge.
    """

    kind: str
    seq: int
    hash: str
    signed_at: str
    key_id: str
    signature: str


@dataclass
class Batch:
    """What one append transaction writes: record rows ``(body, hash)`` and signed marks."""

    rows: list[tuple[str, str]]
    marks: list[Mark] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    head_hash: str = GENESIS_HASH


class AuditStore(Protocol):
    """Storage of audit rows and marks. Appends must be serialised across processes.

    Rows are ``(body, hash)`` in physical insertion order; ``seq`` is read from the body by the
    store (generated columns) and by the verifier.
    """

    def append(self, build: Callable[[int, str], Batch]) -> Batch:
        """Atomically: read the last record's ``(seq, hash)`` (or the base), call ``build`` and
        persist its rows and marks (a ``head``/``base`` mark replaces the previous one)."""
        ...

    def last(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the physically last record, None when there is none."""
        ...

    def id_bounds(self) -> tuple[int, int, int] | None:
        """``(min id, max id, count)`` of the records, None when empty."""
        ...

    def scan(self, lo_id: int, hi_id: int) -> Iterator[tuple[str, str]]:
        """``(body, hash)`` of records with ``lo_id <= id <= hi_id`` in id order, streamed."""
        ...

    def select(self, since_seq: int = 0, target: str | None = None,
               action_prefix: str | None = None,
               limit: int | None = None) -> Iterator[tuple[str, str]]:
        """``(body, hash)`` of records with ``seq > since_seq`` (and filters), in id order,
        at most ``limit``."""
        ...

    def marks(self) -> list[Mark]:
        """Every signed mark."""
        ...

    def put_mark(self, mark: Mark) -> None:
        """Store one mark (replacing the previous ``head``/``base``)."""
        ...

    def first_seq_at_or_after(self, ts: str) -> int | None:
        """Smallest ``seq`` whose ``ts >= ts`` (ISO-8601 UTC strings compare as times)."""
        ...

    def purge(self, through_seq: int, base: Mark) -> int:
        """Delete records with ``seq <= through_seq`` and set ``base``, atomically."""
        ...

    def fork_safe(self) -> bool:
        """True when ``scan`` may be called from forked worker processes."""
        ...


def _mark_row(m: Mark) -> tuple[str, int, str, str, str, str]:
    return (m.kind, m.seq, m.hash, m.signed_at, m.key_id, m.signature)


# --------------------------------------------------------------------------- memory


class MemoryAuditStore:
    """Rows in a Python list: for tests and tooling (e.g. verifying an exported copy).

    Example:
        >>> log = AuditLog(cfg, store=MemoryAuditStore(), signing_key=b"k")
    """

    def __init__(self, rows: list[tuple[str, str]] | None = None,
                 marks: list[Mark] | None = None) -> None:
        self.rows: list[tuple[str, str]] = list(rows or [])
        self.mark_list: list[Mark] = list(marks or [])
        self._lock = threading.Lock()

    def _base(self) -> tuple[int, str]:
        base = [m for m in self.mark_list if m.kind == "base"]
        return (base[-1].seq, base[-1].hash) if base else (0, GENESIS_HASH)

    def append(self, build: Callable[[int, str], Batch]) -> Batch:
        with self._lock:
            last = self.last() or self._base()
            batch = build(*last)
            self.rows.extend(batch.rows)
            for m in batch.marks:
                self.put_mark(m)
            return batch

    def last(self) -> tuple[int, str] | None:
        from mlplat.audit._chain import body_seq

        if not self.rows:
            return None
        body, digest = self.rows[-1]
        return body_seq(body), digest

    def id_bounds(self) -> tuple[int, int, int] | None:
        return (1, len(self.rows), len(self.rows)) if self.rows else None

    def scan(self, lo_id: int, hi_id: int) -> Iterator[tuple[str, str]]:
        return iter(self.rows[lo_id - 1:hi_id])

    def select(self, since_seq: int = 0, target: str | None = None,
               action_prefix: str | None = None,
               limit: int | None = None) -> Iterator[tuple[str, str]]:
        import json

        found = 0
        for body, digest in self.rows:
            if limit is not None and found >= limit:
                return
            rec = json.loads(body)
            if rec["seq"] <= since_seq or (target is not None and rec["target"] != target):
                continue
            if action_prefix is not None and not str(rec["action"]).startswith(action_prefix):
                continue
            found += 1
            yield body, digest

    def marks(self) -> list[Mark]:
        return list(self.mark_list)

    def put_mark(self, mark: Mark) -> None:
        if mark.kind in ("head", "base"):
            self.mark_list = [m for m in self.mark_list if m.kind != mark.kind]
        else:
            self.mark_list = [m for m in self.mark_list
                              if not (m.kind == mark.kind and m.seq == mark.seq)]
        self.mark_list.append(mark)

    def first_seq_at_or_after(self, ts: str) -> int | None:
        import json

        for body, _ in self.rows:
            rec = json.loads(body)
            if rec["ts"] >= ts:
                return int(rec["seq"])
        return None

    def purge(self, through_seq: int, base: Mark) -> int:
        from mlplat.audit._chain import body_seq

        with self._lock:
            keep = [r for r in self.rows if body_seq(r[0]) > through_seq]
            removed = len(self.rows) - len(keep)
            self.rows = keep
            self.put_mark(base)
            return removed

    def fork_safe(self) -> bool:
        return False


# --------------------------------------------------------------------------- SQLite

_LIVE: weakref.WeakSet[SqliteAuditStore] = weakref.WeakSet()
"""Stores with an open connection, so a forked child can disown them (``_disown_in_child``)."""
_INHERITED: list[sqlite3.Connection] = []
"""Connections a forked child inherited: kept referenced, so they are never closed there."""


def _disown_in_child() -> None:
    """After ``fork()``: set aside every connection the child inherited, unclosed.

    SQLite locks with POSIX ``fcntl`` locks, which belong to the process and are all dropped
    when it closes *any* descriptor of the file; SQLite's own rule is "do not carry an open
    database connection across a fork()". A child that closed an inherited connection (garbage
    collection does, when it frees a store the parent had dropped) could drop the locks of its
    own connection. ``verify`` forks its scan workers, so this is kept by the module itself.
    """
    for store in list(_LIVE):
        if store._conn is not None:
            _INHERITED.append(store._conn)
            store._conn, store._pid = None, -1
        store._lock = threading.Lock()  # the parent's may have been held by another thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_disown_in_child)


class SqliteAuditStore:
    """Audit rows in one SQLite file (WAL, ``synchronous=FULL``); ``BEGIN IMMEDIATE`` makes
    concurrent appenders queue, so sequence numbers never gap or repeat.

    Args:
        path: The database file (created with its folder).
        retention_days: Records younger than this cannot be deleted (a trigger refuses it).
        busy_timeout_s: How long an appender waits for another one's transaction.

    Example:
        >>> store = SqliteAuditStore(Path(".mlplat/audit.db"), retention_days=2557)
    """

    def __init__(self, path: Path, retention_days: int = 2557,
                 busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.retention_days = int(retention_days)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.migrated_v0 = False
        """True when this open converted a first-release log (AuditLog then signs its head)."""
        with self._lock:
            self._connect()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "retention_days": self.retention_days,
                "_busy_timeout_s": self._busy_timeout_s, "migrated_v0": self.migrated_v0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._conn, self._pid = threading.Lock(), None, -1

    def _schema(self, conn: sqlite3.Connection) -> None:
        days = self.retention_days
        conn.execute("BEGIN IMMEDIATE")
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_xinfo(audit_log)")]
            if cols and "body" not in cols:
                _migrate_v0(conn)
                self.migrated_v0 = True
            conn.execute("""
                CREATE TABLE IF NOT EXISTS audit_log (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    body TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    seq INTEGER GENERATED ALWAYS AS (json_extract(body, '$.seq')) VIRTUAL,
                    ts TEXT GENERATED ALWAYS AS (json_extract(body, '$.ts')) VIRTUAL,
                    action TEXT GENERATED ALWAYS AS (json_extract(body, '$.action')) VIRTUAL,
                    target TEXT GENERATED ALWAYS AS (json_extract(body, '$.target')) VIRTUAL
                )""")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS audit_log_seq ON audit_log(seq)")
            # Only seq is indexed: every extra index costs each append a JSON extract + a
            # b-tree insert; target/action filters scan (rare reads: catalog, lineage).
            conn.execute("DROP INDEX IF EXISTS audit_log_target")
            conn.execute("""
                CREATE TABLE IF NOT EXISTS audit_marks (
                    kind TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
                    signed_at TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL,
                    PRIMARY KEY (kind, seq)
                )""")
            conn.execute("""
                CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
                BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END""")
            name = f"audit_log_retention_{days}d"
            existing = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='trigger' "
                "AND name LIKE 'audit_log_retention_%'")]
            if existing != [name]:
                for old in existing:
                    conn.execute(f'DROP TRIGGER "{old}"')
                conn.execute(f"""
                    CREATE TRIGGER "{name}" BEFORE DELETE ON audit_log
                    WHEN julianday(OLD.ts) > julianday('now') - {days}
                    BEGIN SELECT RAISE(ABORT, 'audit record younger than the retention period
                        ({days} days): DELETE refused'); END""")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        # A connection inherited through fork() must not be used by the child: reopen per pid.
        if self._conn is not None:
            if self._pid == os.getpid():
                return self._conn
            _INHERITED.append(self._conn)  # forked without the at-fork hook: never close it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            # WAL lets readers (verify, events) run while another process appends; FULL
            # fsyncs every commit so an acknowledged audit record survives a power cut.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._schema(conn)
        except sqlite3.Error as exc:
            raise InfraError(
                f"Cannot open the audit log at {self.path}: {exc}. Check that the folder is "
                "writable and on a local disk (SQLite WAL does not work over NFS)."
            ) from exc
        self._conn, self._pid = conn, os.getpid()
        _LIVE.add(self)
        return conn

    def close(self) -> None:
        """Close this process's connection (the next call reopens one)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn, self._pid = None, -1
            _LIVE.discard(self)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._connect().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise InfraError(f"Cannot read the audit log at {self.path}: {exc}.") from exc

    def append(self, build: Callable[[int, str], Batch]) -> Batch:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT seq, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
                    if row is None:
                        base = conn.execute(
                            "SELECT seq, hash FROM audit_marks WHERE kind='base'").fetchone()
                        row = base or (0, GENESIS_HASH)
                    batch = build(int(row[0]), str(row[1]))
                    conn.executemany("INSERT INTO audit_log (body, hash) VALUES (?, ?)",
                                     batch.rows)
                    for m in batch.marks:
                        self._put(conn, m)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise InfraError(
                    f"Audit append to {self.path} failed: {exc}. The action was not recorded; "
                    "retry it."
                ) from exc
            return batch

    @staticmethod
    def _put(conn: sqlite3.Connection, m: Mark) -> None:
        if m.kind in ("head", "base"):
            conn.execute("DELETE FROM audit_marks WHERE kind=?", (m.kind,))
        conn.execute("INSERT OR REPLACE INTO audit_marks VALUES (?,?,?,?,?,?)", _mark_row(m))

    def last(self) -> tuple[int, str] | None:
        rows = self._read("SELECT seq, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def id_bounds(self) -> tuple[int, int, int] | None:
        rows = self._read("SELECT min(id), max(id), count(*) FROM audit_log")
        return None if not rows or rows[0][0] is None else (rows[0][0], rows[0][1], rows[0][2])

    def scan(self, lo_id: int, hi_id: int) -> Iterator[tuple[str, str]]:
        # A private connection: a scan is long and may run in a forked worker.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s)
        try:
            cur = conn.execute("SELECT body, hash FROM audit_log WHERE id BETWEEN ? AND ? "
                               "ORDER BY id", (lo_id, hi_id))
            while True:
                chunk = cur.fetchmany(20_000)
                if not chunk:
                    return
                yield from chunk
        except sqlite3.Error as exc:
            raise InfraError(f"Cannot read the audit log at {self.path}: {exc}.") from exc
        finally:
            conn.close()

    def select(self, since_seq: int = 0, target: str | None = None,
               action_prefix: str | None = None,
               limit: int | None = None) -> Iterator[tuple[str, str]]:
        sql = "SELECT body, hash FROM audit_log WHERE seq > ?"
        args: list[Any] = [since_seq]
        if target is not None:
            sql, args = sql + " AND target = ?", [*args, target]
        if action_prefix is not None:
            sql, args = sql + " AND substr(action, 1, ?) = ?", [*args, len(action_prefix),
                                                                 action_prefix]
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        return iter(self._read(sql, tuple(args)))

    def marks(self) -> list[Mark]:
        return [Mark(*r) for r in self._read(
            "SELECT kind, seq, hash, signed_at, key_id, signature FROM audit_marks ORDER BY seq")]

    def put_mark(self, mark: Mark) -> None:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._put(conn, mark)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise InfraError(f"Cannot write an audit checkpoint to {self.path}: {exc}") from exc

    def first_seq_at_or_after(self, ts: str) -> int | None:
        rows = self._read("SELECT min(seq) FROM audit_log WHERE ts >= ?", (ts,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def purge(self, through_seq: int, base: Mark) -> int:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    n = conn.execute("DELETE FROM audit_log WHERE seq <= ?", (through_seq,)).rowcount
                    self._put(conn, base)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return int(n)
            except sqlite3.IntegrityError as exc:
                raise UserError(f"The audit store refused the purge: {exc}") from exc
            except sqlite3.Error as exc:
                raise InfraError(f"Audit purge on {self.path} failed: {exc}") from exc

    def fork_safe(self) -> bool:
        return True


def _migrate_v0(conn: sqlite3.Connection) -> None:
    """Convert a log written by the first release (one column per field) to body + hash.

    The old hash was already sha256 of the canonical JSON of the fields, i.e. of the new body,
    so every stored hash is kept as it was and a record tampered with before still fails.
    """
    import json

    from mlplat.audit._chain import canonical_body

    conn.execute("ALTER TABLE audit_log RENAME TO audit_log_v0")
    conn.execute("""
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, hash TEXT NOT NULL,
            seq INTEGER GENERATED ALWAYS AS (json_extract(body, '$.seq')) VIRTUAL,
            ts TEXT GENERATED ALWAYS AS (json_extract(body, '$.ts')) VIRTUAL,
            action TEXT GENERATED ALWAYS AS (json_extract(body, '$.action')) VIRTUAL,
            target TEXT GENERATED ALWAYS AS (json_extract(body, '$.target')) VIRTUAL
        )""")
    old = conn.execute("SELECT seq, ts, actor, action, target, outcome, reason, details, "
                       "prev_hash, hash FROM audit_log_v0 ORDER BY id").fetchall()
    rows = []
    for seq, ts, actor, action, target, outcome, reason, details, prev, digest in old:
        canon = json.dumps(json.loads(details), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
        rows.append((canonical_body(seq, ts, actor, action, target, outcome, reason, canon,
                                    prev), digest))
    conn.executemany("INSERT INTO audit_log (body, hash) VALUES (?, ?)", rows)
    conn.execute("DROP TABLE audit_log_v0")
