"""The audit log behaves the same on SQLite and on a real PostgreSQL server (the `prod`
profile's store), including the retention triggers that refuse UPDATE and early DELETE."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from mlplat.audit import AuditLog, PostgresAuditStore, SqliteAuditStore
from mlplat.config import PostgresAudit, load_config
from mlplat.errors import UserError
from tests.services import Service, create_database

REPO = Path(__file__).resolve().parents[3]
CFG = load_config(REPO / "platform.yaml")
KEY = b"backend-test-key"
_db_names = itertools.count()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


class Backend:
    """A fresh empty store plus raw SQL access to it (as an attacker with DB rights)."""

    def __init__(self, kind: str, tmp: Path, pg: Service | None) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp / f"audit-{next(_db_names)}.db"
            self.store: SqliteAuditStore | PostgresAuditStore = SqliteAuditStore(self.path)
        else:
            assert pg is not None
            name = f"audit_{next(_db_names)}_{tmp.name[-8:].lower().replace('-', '_')}"
            create_database(pg.port, name)
            self.dsn = f"host=127.0.0.1 port={pg.port} dbname={name} user=postgres"
            self.store = PostgresAuditStore(self.dsn, "MLPLAT_TEST_UNSET_PASSWORD")

    def log(self, clock: Callable[[], float] | None = None) -> AuditLog:
        return AuditLog(CFG, clock=clock, store=self.store, signing_key=KEY, checkpoint_every=3)

    def sql(self, statement: str, *args: object, as_attacker: bool = True) -> None:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.path)
            if as_attacker:
                for (n,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
                    conn.execute(f'DROP TRIGGER "{n}"')
            try:
                conn.execute(statement, args)
                conn.commit()
            finally:
                conn.close()
            return
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                if as_attacker:
                    cur.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
                cur.execute(statement.replace("?", "%s"), args)
                if as_attacker:
                    cur.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
            conn.commit()
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    pg = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    yield Backend(request.param, tmp_path, pg)


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(f"user{i}", "promote", f"fraud/{i}", reason="canary green",
                   details={"weights": {"1": 95, "2": 5}, "i": i})


def test_append_verify_events_and_bulk(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 4)
    batch = log.append_many({"actor": "quota-bot", "action": "quota_change",
                             "target": "team/risk", "details": {"cpu": i}} for i in range(5))
    assert (batch.first_seq, batch.last_seq) == (5, 9)
    v = log.verify()
    assert (v.ok, v.records, v.checkpoints) == (True, 9, 3), v.problem
    assert [e.seq for e in log.events(target="team/risk")] == [5, 6, 7, 8, 9]
    assert [e.actor for e in log.events(since_seq=7)] == ["quota-bot"] * 2
    assert log.head() == (9, batch.head_hash)


def test_edits_deletions_and_truncation_are_named(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 6)
    backend.sql("UPDATE audit_log SET body = replace(body, '\"actor\":\"user2\"', "
                "'\"actor\":\"mallory\"') WHERE id = 3")
    v = log.verify()
    assert (v.ok, v.first_bad_seq) == (False, 3) and "edited" in v.problem
    backend.sql("DELETE FROM audit_log WHERE id = 3")
    assert log.verify().first_bad_seq == 3
    backend.sql("DELETE FROM audit_log WHERE id >= 5")
    v = log.verify()
    assert (v.ok, v.first_bad_seq) == (False, 3)  # still the first bad one
    assert "deleted" in v.problem


def test_truncated_tail_is_detected(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 5)
    backend.sql("DELETE FROM audit_log WHERE id = 5")
    v = log.verify()
    assert (v.ok, v.first_bad_seq) == (False, 5) and "removed" in v.problem


def test_triggers_refuse_update_and_deleting_young_records(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 2)
    with pytest.raises((psycopg2.Error, Exception), match="append-only"):
        backend.sql("UPDATE audit_log SET hash = 'x' WHERE id = 1", as_attacker=False)
    with pytest.raises((psycopg2.Error, Exception), match="retention"):
        backend.sql("DELETE FROM audit_log WHERE id = 1", as_attacker=False)
    if backend.kind == "postgres":
        with pytest.raises(psycopg2.Error, match="TRUNCATE refused"):
            backend.sql("TRUNCATE audit_log", as_attacker=False)
    assert log.verify().ok


def test_purge_obeys_retention_in_api_and_database(backend: Backend) -> None:
    clock = Clock(1_262_304_000.0)  # 2010: older than the 7-year retention
    log = backend.log(clock)
    _fill(log, 4)
    clock.t = datetime.now(UTC).timestamp()
    _fill(log, 1)  # seq 5: young
    with pytest.raises(UserError, match="retention period is 2557 days"):
        log.purge(datetime.now(UTC), actor="dpo", reason="early")
    assert log.purge(datetime(2011, 1, 1, tzinfo=UTC), actor="dpo", reason="RET-1") == 4
    v = log.verify()
    assert (v.ok, v.base_seq, v.records) == (True, 4, 3), v.problem
    actions = [(e.action, e.outcome) for e in log.events()]
    assert actions == [("promote", "ok"), ("audit.purge", "denied"), ("audit.purge", "ok")]


def test_prod_profile_uses_postgres(postgres_server: Service, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    name = f"audit_prod_{next(_db_names)}"
    create_database(postgres_server.port, name)
    prod = CFG.profiles["prod"].model_copy(update={"audit": PostgresAudit(
        type="postgres", dsn=f"host=127.0.0.1 port={postgres_server.port} dbname={name} "
        "user=postgres", password_env="MLPLAT_TEST_AUDIT_PW")})
    cfg = CFG.model_copy(update={"profiles": {**CFG.profiles, "prod": prod}})
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    monkeypatch.delenv("MLPLAT_AUDIT_SIGNING_KEY", raising=False)
    with pytest.raises(Exception, match="MLPLAT_AUDIT_SIGNING_KEY"):
        AuditLog(cfg)  # prod never generates a key
    monkeypatch.setenv("MLPLAT_AUDIT_SIGNING_KEY", "prod-key")
    log = AuditLog(cfg)
    log.append("ci", "promote", "fraud/7", reason="release")
    assert isinstance(log._store, PostgresAuditStore)
    assert AuditLog(cfg).verify().ok
