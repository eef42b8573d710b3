"""The audit log's hash chain: appends verify, and any edit, deletion or reorder is named."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplat.config import load_config
from mlplat.errors import UserError
from mlplat.governance import GENESIS_HASH, AuditLog, SqliteAuditStore, record_hash

REPO = Path(__file__).resolve().parents[3]
CFG = load_config(REPO / "platform.yaml")
EDITABLE = ["seq", "ts", "actor", "action", "target", "outcome", "reason", "details",
            "prev_hash", "hash"]


class FakeClock:
    def __init__(self, t: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.t = t

    def __call__(self) -> float:
        self.t += 1.5
        return self.t


def _log(path: Path) -> AuditLog:
    return AuditLog(CFG, clock=FakeClock(), store=SqliteAuditStore(path))


def _filled(path: Path, n: int) -> AuditLog:
    log = _log(path)
    for i in range(n):
        log.append(f"user{i}", "promote", f"fraud/{i}", reason=f"r{i}",
                   details={"weights": {"v1": 95, "v2": 5}, "i": i})
    return log


def _sql(path: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


def _changed(field: str, old: object) -> object:
    """A value for ``field`` that differs from ``old`` in meaning, not just in formatting."""
    if field == "seq":
        return int(old) + 1000  # type: ignore[call-overload]
    if field == "details":
        return json.dumps({**json.loads(str(old)), "tampered": True})
    if field == "outcome":
        return "denied" if old != "denied" else "ok"
    if field == "ts":
        return "2020-01-01T00:00:00+00:00"
    return str(old)[:-1] + ("x" if not str(old).endswith("x") else "y")


def test_append_chains_and_verifies(platform_config) -> None:
    log = AuditLog(platform_config, clock=FakeClock())
    assert Path(platform_config.local_path("audit.db")).is_file()
    first = log.append("alice", "promote", "fraud/2", reason="canary green")
    second = log.append("bob", "rollback", "fraud/2", details={"p99_ms": 310.5}, outcome="ok")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.ts > first.ts and second.ts.tzinfo is not None
    assert [e.model_dump() for e in log.events()] == [first.model_dump(), second.model_dump()]
    assert [e.seq for e in log.events(since_seq=1)] == [2]
    result = log.verify()
    assert (result.ok, result.records, result.first_bad_seq, result.head_hash) == (
        True, 2, None, second.hash)
    assert log.head() == (2, second.hash)
    # An auditor can recompute a record's hash from its public fields alone.
    row = first.model_dump(mode="json")
    assert record_hash({**row, "ts": first.ts.isoformat()}) == first.hash


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    _filled(tmp_path / "a.db", 3)
    log = _log(tmp_path / "a.db")
    assert log.append("carol", "delete", "fraud/1").seq == 4
    assert log.verify().ok and log.verify().records == 4


def test_api_is_append_only() -> None:
    public = {n for n in dir(AuditLog) if not n.startswith("_")}
    assert public == {"append", "events", "head", "verify"}


@pytest.mark.parametrize("field", EDITABLE)
@pytest.mark.parametrize("seq", [1, 3, 5])
def test_editing_any_field_of_any_record_is_named(tmp_path: Path, field: str, seq: int) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    old = sqlite3.connect(path).execute(f"SELECT {field} FROM audit_log WHERE seq=?",
                                        (seq,)).fetchone()[0]
    _sql(path, f"UPDATE audit_log SET {field}=? WHERE seq=?", _changed(field, old), seq)
    result = _log(path).verify()
    assert not result.ok
    assert result.first_bad_seq == seq, result.problem
    assert result.problem


def test_deleting_a_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    _sql(path, "DELETE FROM audit_log WHERE seq=3")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq, result.records) == (False, 3, 4)
    assert "deleted" in result.problem


def test_reordering_records_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    # Swap the physical positions of records 2 and 4 (their content stays intact).
    _sql(path, "UPDATE audit_log SET id=-1 WHERE seq=2")
    _sql(path, "UPDATE audit_log SET id=2 WHERE seq=4")
    _sql(path, "UPDATE audit_log SET id=4 WHERE seq=2")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_truncating_the_tail_needs_a_published_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = _filled(path, 5)
    published = log.head()
    _sql(path, "DELETE FROM audit_log WHERE seq=5")
    assert _log(path).verify().ok  # the chain alone cannot see a cut tail …
    result = _log(path).verify(expected_head=published)  # … the published head can
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "removed" in result.problem


def test_rewriting_the_whole_tail_is_caught_by_the_published_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = _filled(path, 3)
    published = log.head()
    _sql(path, "DELETE FROM audit_log WHERE seq=3")
    _log(path).append("mallory", "promote", "fraud/9")  # a re-forged record 3
    assert _log(path).verify().ok
    result = _log(path).verify(expected_head=published)
    assert (result.ok, result.first_bad_seq) == (False, 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=1, max_value=6),
    target=st.integers(min_value=0, max_value=5),
    mutation=st.sampled_from(["delete", "swap", *[f"edit:{f}" for f in EDITABLE]]),
)
def test_any_single_mutation_is_detected_at_the_right_record(n: int, target: int,
                                                             mutation: str) -> None:
    seq = target % n + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        _filled(path, n)
        expected = seq
        if mutation == "delete":
            _sql(path, "DELETE FROM audit_log WHERE seq=?", seq)
            if seq == n:
                return  # tail truncation: covered by the published-head test above
        elif mutation == "swap":
            if n < 2:
                return
            other = seq % n + 1  # a different record
            lo, hi = sorted((seq, other))
            _sql(path, "UPDATE audit_log SET id=-1 WHERE seq=?", lo)
            _sql(path, "UPDATE audit_log SET id=? WHERE seq=?", lo, hi)
            _sql(path, "UPDATE audit_log SET id=? WHERE id=-1", hi)
            expected = lo
        else:
            field = mutation.split(":", 1)[1]
            conn = sqlite3.connect(path)
            old = conn.execute(f"SELECT {field} FROM audit_log WHERE seq=?", (seq,)).fetchone()[0]
            conn.close()
            _sql(path, f"UPDATE audit_log SET {field}=? WHERE seq=?", _changed(field, old), seq)
        result = _log(path).verify()
        assert not result.ok
        assert result.first_bad_seq == expected, (mutation, result.problem)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"actor": ""}, "actor must be a non-empty string"),
        ({"outcome": "maybe"}, r"outcome must be one of \['ok', 'denied', 'failed'\]"),
        ({"details": {"x": float("nan")}}, "plain JSON"),
        ({"details": {"x": {1, 2}}}, "plain JSON"),
    ],
)
def test_bad_appends_are_refused_with_the_reason(tmp_path: Path, kwargs: dict,
                                                 match: str) -> None:
    log = _log(tmp_path / "audit.db")
    call = {"actor": "alice", "action": "promote", "target": "fraud/2", **kwargs}
    with pytest.raises(UserError, match=match):
        log.append(**call)
    assert log.verify().records == 0


def test_postgres_profile_says_it_is_not_implemented(platform_config, monkeypatch) -> None:
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    with pytest.raises(UserError, match=r"PostgreSQL.*does not implement yet.*MLPLAT_PROFILE=local"):
        AuditLog(platform_config)


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(CFG, store=SqliteAuditStore(Path(path)))
    for i in range(count):
        log.append(f"worker{worker}", "quota-change", f"team/{worker}", details={"i": i})


def test_concurrent_appenders_keep_one_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    SqliteAuditStore(path)  # create the schema once, so the workers race only on appends
    workers, per_worker = 4, 40
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, per_worker))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    log = _log(path)
    result = log.verify()
    assert (result.ok, result.records) == (True, workers * per_worker), result.problem
    seen = sorted((e.actor, e.details["i"]) for e in log.events())
    assert seen == sorted((f"worker{w}", i) for w in range(workers) for i in range(per_worker))
