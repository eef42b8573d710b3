"""The audit log in PostgreSQL (the ``prod`` profile): same rows and marks as SQLite.

Appends are serialised with a transaction-scoped advisory lock, so ids grow in commit order
and sequence numbers never gap or repeat. A ``BEFORE UPDATE OR DELETE`` trigger refuses every
UPDATE and any DELETE of a record younger than the retention period, and a ``BEFORE TRUNCATE``
trigger refuses TRUNCATE — for every client, not only mlplat. Run the platform as a role that
owns neither the table nor the trigger so it cannot drop them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mlplat.audit._store import GENESIS_HASH, Batch, Mark, _mark_row
from mlplat.errors import InfraError, UserError

_LOCK_KEY = 0x6D6C706C6174  # "mlplat": the advisory lock every appender takes


def _schema(days: int) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS audit_log (
        id BIGSERIAL PRIMARY KEY,
        body TEXT NOT NULL,
        hash TEXT NOT NULL,
        seq BIGINT GENERATED ALWAYS AS (((body::jsonb) ->> 'seq')::bigint) STORED UNIQUE,
        ts TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'ts') STORED,
        action TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'action') STORED,
        target TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'target') STORED
    );
    CREATE TABLE IF NOT EXISTS audit_marks (
        kind TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL, signed_at TEXT NOT NULL,
        key_id TEXT NOT NULL, signature TEXT NOT NULL, PRIMARY KEY (kind, seq)
    );
    CREATE OR REPLACE FUNCTION mlplat_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'audit_log is append-only: UPDATE of record % refused', OLD.seq
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (OLD.ts)::timestamptz > now() - make_interval(days => {days}) THEN
            RAISE EXCEPTION 'audit record % (%) is younger than the retention period of {days} '
                'days: DELETE refused', OLD.seq, OLD.ts USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END $$;
    CREATE OR REPLACE FUNCTION mlplat_audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: TRUNCATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END $$;
    DROP TRIGGER IF EXISTS audit_log_guard ON audit_log;
    CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION mlplat_audit_guard();
    DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION mlplat_audit_no_truncate();
    """


class PostgresAuditStore:
    """Audit rows in PostgreSQL.

    Args:
        dsn: libpq DSN without the password, e.g. ``host=db dbname=audit user=mlplat``.
        password_env: Environment variable holding the password (unset: none is sent).
        retention_days: Records younger than this cannot be deleted (trigger).

    Raises:
        InfraError: the server cannot be reached or the schema cannot be created.

    Example:
        >>> PostgresAuditStore("host=127.0.0.1 port=5432 dbname=audit user=mlplat",
        ...                    "MLPLAT_AUDIT_DB_PASSWORD", retention_days=2557)
    """

    def __init__(self, dsn: str, password_env: str | None = None,
                 retention_days: int = 2557) -> None:
        self.dsn = dsn
        self.password_env = password_env
        self.retention_days = int(retention_days)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = -1
        with self._lock:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                    cur.execute(_schema(self.retention_days))
                conn.commit()
            except Exception as exc:
                conn.rollback()
                raise InfraError(f"Cannot create the audit schema in PostgreSQL ({dsn}): {exc}") \
                    from exc

    def __getstate__(self) -> dict[str, Any]:
        return {"dsn": self.dsn, "password_env": self.password_env,
                "retention_days": self.retention_days}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._conn, self._pid = threading.Lock(), None, -1

    def _new_connection(self) -> Any:
        import psycopg2

        password = os.environ.get(self.password_env) if self.password_env else None
        try:
            return psycopg2.connect(self.dsn, password=password) if password else \
                psycopg2.connect(self.dsn)
        except psycopg2.Error as exc:
            hint = (f" Is ${self.password_env} set?" if self.password_env and not password
                    else "")
            raise InfraError(
                f"Cannot connect to the PostgreSQL audit store ({self.dsn}): "
                f"{str(exc).strip()}.{hint}"
            ) from exc

    def _connect(self) -> Any:
        # psycopg2 connections must not cross fork(): reopen per pid.
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return self._conn
        self._conn, self._pid = self._new_connection(), os.getpid()
        return self._conn

    def _run(self, fn: Callable[[Any], Any], what: str) -> Any:
        import psycopg2

        with self._lock:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    out = fn(cur)
                conn.commit()
                return out
            except psycopg2.errors.InsufficientPrivilege as exc:
                conn.rollback()
                raise UserError(f"The audit store refused the {what}: {str(exc).strip()}") \
                    from exc
            except psycopg2.Error as exc:
                conn.rollback()
                raise InfraError(
                    f"Audit {what} in PostgreSQL ({self.dsn}) failed: {str(exc).strip()}."
                    + (" The action was not recorded; retry it." if what == "append" else "")
                ) from exc

    def append(self, build: Callable[[int, str], Batch]) -> Batch:
        from psycopg2.extras import execute_values

        def txn(cur: Any) -> Batch:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute("SELECT seq, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT seq, hash FROM audit_marks WHERE kind='base'")
                row = cur.fetchone() or (0, GENESIS_HASH)
            batch = build(int(row[0]), str(row[1]))
            execute_values(cur, "INSERT INTO audit_log (body, hash) VALUES %s", batch.rows,
                           page_size=1000)
            for m in batch.marks:
                self._put(cur, m)
            return batch

        return self._run(txn, "append")  # type: ignore[no-any-return]

    @staticmethod
    def _put(cur: Any, m: Mark) -> None:
        if m.kind in ("head", "base"):
            cur.execute("DELETE FROM audit_marks WHERE kind=%s", (m.kind,))
        cur.execute(
            "INSERT INTO audit_marks VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (kind, seq) DO "
            "UPDATE SET hash=EXCLUDED.hash, signed_at=EXCLUDED.signed_at, "
            "key_id=EXCLUDED.key_id, signature=EXCLUDED.signature", _mark_row(m))

    def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        def q(cur: Any) -> list[Any]:
            cur.execute(sql, args)
            return list(cur.fetchall())

        return self._run(q, "read")  # type: ignore[no-any-return]

    def last(self) -> tuple[int, str] | None:
        rows = self._fetch("SELECT seq, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def id_bounds(self) -> tuple[int, int, int] | None:
        rows = self._fetch("SELECT min(id), max(id), count(*) FROM audit_log")
        return None if not rows or rows[0][0] is None else (
            int(rows[0][0]), int(rows[0][1]), int(rows[0][2]))

    def scan(self, lo_id: int, hi_id: int) -> Iterator[tuple[str, str]]:
        import psycopg2

        conn = self._new_connection()  # a server-side cursor streams; its own connection
        try:
            with conn.cursor(name="mlplat_audit_scan") as cur:
                cur.itersize = 20_000
                cur.execute("SELECT body, hash FROM audit_log WHERE id BETWEEN %s AND %s "
                            "ORDER BY id", (lo_id, hi_id))
                yield from cur
        except psycopg2.Error as exc:
            raise InfraError(f"Cannot read the PostgreSQL audit log ({self.dsn}): {exc}") \
                from exc
        finally:
            conn.close()

    def select(self, since_seq: int = 0, target: str | None = None,
               action_prefix: str | None = None,
               limit: int | None = None) -> Iterator[tuple[str, str]]:
        sql = "SELECT body, hash FROM audit_log WHERE seq > %s"
        args: list[Any] = [since_seq]
        if target is not None:
            sql, args = sql + " AND target = %s", [*args, target]
        if action_prefix is not None:
            sql, args = sql + " AND left(action, %s) = %s", [*args, len(action_prefix),
                                                              action_prefix]
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else "")
        return iter(self._fetch(sql, tuple(args)))

    def marks(self) -> list[Mark]:
        return [Mark(r[0], int(r[1]), *r[2:]) for r in self._fetch(
            "SELECT kind, seq, hash, signed_at, key_id, signature FROM audit_marks ORDER BY seq")]

    def put_mark(self, mark: Mark) -> None:
        self._run(lambda cur: self._put(cur, mark), "checkpoint")

    def first_seq_at_or_after(self, ts: str) -> int | None:
        rows = self._fetch("SELECT min(seq) FROM audit_log WHERE ts >= %s", (ts,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def purge(self, through_seq: int, base: Mark) -> int:
        def txn(cur: Any) -> int:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute("DELETE FROM audit_log WHERE seq <= %s", (through_seq,))
            n = int(cur.rowcount)
            self._put(cur, base)
            return n

        return self._run(txn, "purge")  # type: ignore[no-any-return]

    def fork_safe(self) -> bool:
        return True
