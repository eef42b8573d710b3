"""The audit log: appends chain and verify; any edit, deletion, insertion, reorder, truncation
or rewrite is detected and the first bad record named; retention is enforced.

Backend-independent behaviour against SQLite *and* PostgreSQL lives in
test_governance_postgres.py; this file covers the chain itself (SQLite + in-memory).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlplat.audit import (
    GENESIS_HASH,
    AuditLog,
    MemoryAuditStore,
    SqliteAuditStore,
    canonical_body,
    record_hash,
)
from mlplat.config import load_config
from mlplat.errors import UserError
from mlplat.secrets import person_token

REPO = Path(__file__).resolve().parents[3]
CFG = load_config(REPO / "platform.yaml")
KEY = b"unit-test-audit-key"
FIELDS = ["seq", "ts", "actor", "action", "target", "outcome", "reason", "details", "prev_hash"]
T2026 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, t: float = T2026) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.5
        return self.t


def _log(path: Path, clock: FakeClock | None = None, every: int = 4,
         key: bytes = KEY) -> AuditLog:
    return AuditLog(CFG, clock=clock or FakeClock(), store=SqliteAuditStore(path),
                    signing_key=key, checkpoint_every=every)


def _filled(path: Path, n: int, every: int = 4) -> AuditLog:
    log = _log(path, every=every)
    for i in range(n):
        log.append(f"user{i}", "promote", f"fraud/{i}", reason=f"r{i}",
                   details={"weights": {"v1": 95, "v2": 5}, "i": i})
    return log


def _tamper(path: Path, statement: str, *args: object) -> None:
    """Run SQL as someone with write access to the file: triggers do not stop them."""
    conn = sqlite3.connect(path)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute(statement, args)
    conn.commit()
    conn.close()


def _changed(field: str, old: object) -> object:
    """A value for ``field`` that differs from ``old`` in meaning, not just in formatting."""
    if field == "seq":
        return int(old) + 1000  # type: ignore[call-overload]
    if field == "details":
        return {**old, "tampered": True}  # type: ignore[dict-item]
    if field == "outcome":
        return "denied" if old != "denied" else "ok"
    if field == "ts":
        return "2020-01-01T00:00:00.000000+00:00"
    return str(old)[:-1] + ("x" if not str(old).endswith("x") else "y")


def _edit_body(body: str, field: str) -> str:
    rec = json.loads(body)
    rec[field] = _changed(field, rec[field])
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- happy path


def test_append_chains_and_verifies(platform_config) -> None:
    log = AuditLog(platform_config, clock=FakeClock())  # key: the generated local secret
    assert Path(platform_config.local_path("audit.db")).is_file()
    assert Path(platform_config.local_path("secrets/audit_signing_key")).is_file()
    first = log.append("alice", "promote", "fraud/2", reason="canary green")
    second = log.append("bob", "rollback", "fraud/2", details={"p99_ms": 310.5}, outcome="ok")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.ts > first.ts and second.ts.tzinfo is not None
    assert [e.model_dump() for e in log.events()] == [first.model_dump(), second.model_dump()]
    assert [e.seq for e in log.events(since_seq=1)] == [2]
    assert [e.seq for e in log.events(target="fraud/2", action_prefix="roll")] == [2]
    result = log.verify()
    assert (result.ok, result.records, result.first_bad_seq, result.head_hash) == (
        True, 2, None, second.hash)
    assert log.head() == (2, second.hash)
    # An auditor recomputes a record's hash from its public fields alone.
    row = first.model_dump(mode="json")
    assert record_hash({**row, "ts": first.ts.isoformat(timespec="microseconds")}) == first.hash


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=20).filter(lambda s: "\x00" not in s and s.strip()),
       details=st.dictionaries(st.text(max_size=5), st.one_of(
           st.integers(), st.text(max_size=5), st.booleans(), st.none(),
           st.floats(allow_nan=False, allow_infinity=False)), max_size=3))
def test_fast_body_is_exactly_the_canonical_json(text: str, details: dict) -> None:
    assume("\\u0000" not in json.dumps(details))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assume(False)
    dj = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    body = canonical_body(7, "2026-01-01T00:00:00.000001+00:00", text, "promote", text, "ok",
                          text, dj, "ab" * 32)
    row = {"seq": 7, "ts": "2026-01-01T00:00:00.000001+00:00", "actor": text,
           "action": "promote", "target": text, "outcome": "ok", "reason": text,
           "details": details, "prev_hash": "ab" * 32}
    assert hashlib.sha256(body.encode()).hexdigest() == record_hash(row)


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    _filled(tmp_path / "a.db", 3)
    log = _log(tmp_path / "a.db")
    assert log.append("carol", "delete", "fraud/1").seq == 4
    assert log.verify().ok and log.verify().records == 4


def test_api_is_append_only() -> None:
    public = {n for n in dir(AuditLog) if not n.startswith("_")}
    assert public == {"append", "append_many", "checkpoint", "events", "head", "purge", "verify"}


def test_append_many_is_one_all_or_nothing_transaction(tmp_path: Path) -> None:
    log = _log(tmp_path / "a.db", every=10)
    batch = log.append_many({"actor": "quota-bot", "action": "quota_change",
                             "target": f"team/{i}", "details": {"cpu": i}} for i in range(25))
    assert (batch.first_seq, batch.last_seq) == (1, 25)
    with pytest.raises(UserError, match=r"entry 1: Audit outcome must be one of"):
        log.append_many([{"actor": "a", "action": "b", "target": "c"},
                         {"actor": "a", "action": "b", "target": "c", "outcome": "meh"}])
    v = log.verify()
    assert (v.ok, v.records, v.checkpoints) == (True, 25, 2)  # checkpoints at 10 and 20
    assert log.checkpoint() == (25, batch.head_hash)
    assert log.verify().checkpoints == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"actor": ""}, "actor must be a non-empty string"),
        ({"outcome": "maybe"}, r"outcome must be one of \['ok', 'denied', 'failed'\]"),
        ({"details": {"x": float("nan")}}, "plain JSON"),
        ({"details": {"x": {1, 2}}}, "plain JSON"),
        ({"action": "override"}, "needs a reason"),
        ({"target": "a\x00b"}, "NUL"),
    ],
)
def test_bad_appends_are_refused_with_the_reason(tmp_path: Path, kwargs: dict,
                                                 match: str) -> None:
    log = _log(tmp_path / "audit.db")
    call = {"actor": "alice", "action": "promote", "target": "fraud/2", **kwargs}
    with pytest.raises(UserError, match=match):
        log.append(**call)
    assert log.verify().records == 0


# --------------------------------------------------------------------------- tampering on disk


@pytest.mark.parametrize("field", [*FIELDS, "hash"])
@pytest.mark.parametrize("seq", [1, 4])
def test_editing_any_field_of_any_record_is_named(tmp_path: Path, field: str, seq: int) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    body = sqlite3.connect(path).execute(
        "SELECT body FROM audit_log WHERE seq=?", (seq,)).fetchone()[0]
    if field == "hash":
        _tamper(path, "UPDATE audit_log SET hash=? WHERE seq=?", "f" * 64, seq)
    else:
        _tamper(path, "UPDATE audit_log SET body=? WHERE id=?", _edit_body(body, field), seq)
    result = _log(path).verify()
    assert not result.ok
    assert result.first_bad_seq == seq, result.problem
    assert "edited" in result.problem


def test_deleting_a_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    _tamper(path, "DELETE FROM audit_log WHERE seq=3")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq, result.records) == (False, 3, 4)
    assert "deleted" in result.problem


def test_reordering_records_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 5)
    _tamper(path, "UPDATE audit_log SET id=-1 WHERE seq=2")
    _tamper(path, "UPDATE audit_log SET id=2 WHERE seq=4")
    _tamper(path, "UPDATE audit_log SET id=4 WHERE id=-1")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_truncating_the_tail_is_caught_by_the_signed_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 6)
    _tamper(path, "DELETE FROM audit_log WHERE seq >= 5")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "records 5..6 were removed" in result.problem
    # … and deleting the head mark too does not hide it.
    _tamper(path, "DELETE FROM audit_marks WHERE kind='head'")
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)  # checkpoint at 4 vouches up to 4


def test_rewriting_the_tail_with_recomputed_hashes_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 6)
    # Without the key: cut 6 and re-forge it with a valid hash chained to 5.
    _tamper(path, "DELETE FROM audit_log WHERE seq=6")
    prev = sqlite3.connect(path).execute("SELECT hash FROM audit_log WHERE seq=5").fetchone()[0]
    forged = canonical_body(6, "2026-01-01T00:00:30.000000+00:00", "mallory", "promote",
                            "fraud/9", "ok", "", "{}", prev)
    _tamper(path, "INSERT INTO audit_log (body, hash) VALUES (?, ?)", forged,
            hashlib.sha256(forged.encode()).hexdigest())
    result = _log(path).verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)  # after checkpoint 4
    assert "rewritten" in result.problem
    # Appending through mlplat with another key does not launder it either.
    _log(path, key=b"mallory's key").append("mallory", "promote", "fraud/9")
    result = _log(path).verify()
    assert not result.ok and "key" in result.problem


def test_an_external_published_head_still_works(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = _filled(path, 3)
    published = log.head()
    assert log.verify(expected_head=published).ok
    assert log.verify(expected_head=(3, "0" * 64)).first_bad_seq == 3
    assert log.verify(expected_head=(9, "0" * 64)).first_bad_seq == 4


def test_sqlite_triggers_refuse_update_and_young_delete(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _filled(path, 2)
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_log SET hash='x' WHERE seq=1")
    # Records stamped 2026 by the fake clock are younger than 7 years today.
    with pytest.raises(sqlite3.IntegrityError, match="retention"):
        conn.execute("DELETE FROM audit_log WHERE seq=1")
    conn.close()


# --------------------------------------------------------------------------- retention


def test_purge_refuses_young_records_and_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    clock = FakeClock(t=1_262_304_000.0)  # 2010-01-01: records past the 7-year retention
    log = _log(path, clock=clock, every=3)
    for i in range(5):
        log.append("alice", "promote", f"fraud/{i}")
    clock.t = datetime.now(UTC).timestamp()
    log.append("bob", "rollback", "fraud/4")  # a young record (seq 6)
    with pytest.raises(UserError, match=r"retention period is 2557 days"):
        log.purge(datetime.now(UTC), actor="dpo", reason="too early")
    assert log.events()[-1].action == "audit.purge" and log.events()[-1].outcome == "denied"
    deleted = log.purge(datetime(2012, 1, 1, tzinfo=UTC), actor="dpo", reason="RET-7")
    assert deleted == 5
    events = log.events()
    assert [e.seq for e in events] == [6, 7, 8]
    assert events[-1].details["through_seq"] == 5 and events[-1].outcome == "ok"
    v = log.verify()
    assert (v.ok, v.base_seq, v.records) == (True, 5, 3), v.problem
    _tamper(path, "DELETE FROM audit_marks WHERE kind='base'")  # hide that a purge happened
    v = log.verify()
    assert (v.ok, v.first_bad_seq) == (False, 1)


def test_migrates_a_first_release_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER, "
                 "ts TEXT, actor TEXT, action TEXT, target TEXT, outcome TEXT, reason TEXT, "
                 "details TEXT, prev_hash TEXT, hash TEXT)")
    prev = GENESIS_HASH
    for seq in (1, 2):
        row = {"seq": seq, "ts": "2026-01-01T00:00:00+00:00", "actor": "a", "action": "promote",
               "target": "fraud/1", "outcome": "ok", "reason": "", "details": {"k": seq},
               "prev_hash": prev}
        digest = record_hash(row)
        conn.execute("INSERT INTO audit_log (seq, ts, actor, action, target, outcome, reason, "
                     "details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (*[row[k] if k != "details" else json.dumps(row[k]) for k in FIELDS],
                      digest))
        prev = digest
    conn.commit()
    conn.close()
    log = _log(path)
    assert log.verify().ok and log.head() == (2, prev)
    assert log.append("b", "rollback", "fraud/1").seq == 3


# --------------------------------------------------------------------------- random mutations


def _chain(n: int, every: int) -> MemoryAuditStore:
    store = MemoryAuditStore()
    log = AuditLog(CFG, clock=FakeClock(), store=store, signing_key=KEY, checkpoint_every=every)
    log.append_many({"actor": f"u{i}", "action": "promote", "target": f"fraud/{i}",
                     "details": {"i": i}} for i in range(n))
    return store


# Every example mutates each of these chains (1..12 records; checkpoints every 3 or never).
CHAINS = {(n, 3 if n % 2 else 100): _chain(n, 3 if n % 2 else 100) for n in range(1, 13)}
MUTATIONS = ["edit", "edit_hash", "delete", "swap", "truncate", "insert_copy", "insert_forged",
             "forge_tail", "drop_head", "drop_checkpoint_and_truncate"]


def _mutate(rows: list[tuple[str, str]], marks: list, kind: str, i: int, j: int,
            field: str) -> tuple[int | None, list, list]:
    """Apply one mutation; return the seq verify must name (None: any) and the new state."""
    n = len(rows)
    i, j = i % n, j % n
    rows, marks = list(rows), list(marks)
    if kind == "edit":
        rows[i] = (_edit_body(rows[i][0], field), rows[i][1])
        return i + 1, rows, marks
    if kind == "edit_hash":
        rows[i] = (rows[i][0], hashlib.sha256(rows[i][1].encode()).hexdigest())
        return i + 1, rows, marks
    if kind == "delete":
        del rows[i]
        return i + 1, rows, marks
    if kind == "swap":
        lo, hi = sorted((i, j))
        rows[lo], rows[hi] = rows[hi], rows[lo]
        return lo + 1, rows, marks
    if kind == "truncate":
        keep = i  # keep 0..n-1 rows
        return keep + 1, rows[:keep], marks
    if kind == "insert_copy":
        rows.insert(i + 1, rows[i])
        return i + 2, rows, marks
    if kind == "insert_forged":
        prev = rows[i][1]
        body = canonical_body(i + 2, "2026-01-02T00:00:00.000000+00:00", "mallory", "promote",
                              "x", "ok", "", "{}", prev)
        rows.insert(i + 1, (body, hashlib.sha256(body.encode()).hexdigest()))
        return None, rows, marks
    if kind == "forge_tail":  # edit record i and recompute every hash after it (no key)
        prev = rows[i - 1][1] if i else GENESIS_HASH
        for k in range(i, n):
            rec = json.loads(rows[k][0])
            if k == i:
                rec["actor"] = "mallory"
            rec["prev_hash"] = prev
            body = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            prev = hashlib.sha256(body.encode()).hexdigest()
            rows[k] = (body, prev)
        return None, rows, marks
    if kind == "drop_head":
        return None, rows, [m for m in marks if m.kind != "head"]
    # drop the checkpoints and the head, and cut the tail
    return None, rows[:i], [m for m in marks if m.kind == "base"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(steps=st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 50),
                                st.integers(0, 50), st.sampled_from(FIELDS)),
                      min_size=1, max_size=3))
def test_thousands_of_random_mutations_are_all_detected(steps: list) -> None:
    """200 examples × 12 chains: ~2,400 mutated logs, every one must fail verification."""
    checked = 0
    for size, original in CHAINS.items():
        rows, marks = list(original.rows), original.marks()
        expected: int | None = None
        for n_step, (kind, i, j, field) in enumerate(steps):
            if not rows or (kind == "swap" and i % len(rows) == j % len(rows)):
                break
            named, rows, marks = _mutate(rows, marks, kind, i, j, field)
            expected = named if n_step == 0 else None  # several: only detection is promised
        # Wiping every record *and* every mark leaves a fresh empty log: only a head published
        # outside the store (verify(expected_head=...)) reveals that.
        if (rows == original.rows and marks == original.marks()) or not (rows or marks):
            continue
        log = AuditLog(CFG, store=MemoryAuditStore(rows, marks), signing_key=KEY,
                       checkpoint_every=size[1])
        result = log.verify()
        assert not result.ok, (steps, size)
        assert result.problem
        if expected is not None:
            assert result.first_bad_seq == expected, (steps, size, result.problem)
        checked += 1
    assume(checked > 0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(min_value=2, max_value=7), target=st.integers(0, 6),
       mutation=st.sampled_from(["delete", "swap", "truncate", *[f"edit:{f}" for f in FIELDS]]))
def test_mutations_of_the_sqlite_file_are_named(n: int, target: int, mutation: str) -> None:
    seq = target % n + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        _filled(path, n, every=3)
        expected = seq
        if mutation == "delete":
            _tamper(path, "DELETE FROM audit_log WHERE seq=?", seq)
        elif mutation == "truncate":
            _tamper(path, "DELETE FROM audit_log WHERE seq>=?", seq)
        elif mutation == "swap":
            other = seq % n + 1
            lo, hi = sorted((seq, other))
            _tamper(path, "UPDATE audit_log SET id=-1 WHERE id=?", lo)
            _tamper(path, "UPDATE audit_log SET id=? WHERE id=?", lo, hi)
            _tamper(path, "UPDATE audit_log SET id=? WHERE id=-1", hi)
            expected = lo
        else:
            body = sqlite3.connect(path).execute("SELECT body FROM audit_log WHERE id=?",
                                                 (seq,)).fetchone()[0]
            _tamper(path, "UPDATE audit_log SET body=? WHERE id=?",
                    _edit_body(body, mutation.split(":", 1)[1]), seq)
        result = _log(path).verify()
        assert not result.ok
        assert result.first_bad_seq == expected, (mutation, result.problem)


# --------------------------------------------------------------------------- concurrency


APPENDER = """
import sys, time
from pathlib import Path
from mlplat.config import load_config
from mlplat.audit import AuditLog, SqliteAuditStore
path, worker, count, folder, config = sys.argv[1:6]
log = AuditLog(load_config(config), store=SqliteAuditStore(Path(path)),
               signing_key=b"unit-test-audit-key", checkpoint_every=7)
Path(folder, f"ready-{worker}").touch()
deadline = time.monotonic() + 120
while not Path(folder, "go").exists() and time.monotonic() < deadline:
    time.sleep(0.002)
for i in range(int(count)):
    log.append(f"worker{worker}", "quota_change", f"team/{worker}", details={"i": i})
print(f"appended {count}")
"""


def test_concurrent_appenders_keep_one_intact_signed_chain(tmp_path: Path) -> None:
    """Appenders in separate interpreters (as Ray workers and CLIs are), released together."""
    import subprocess
    import sys
    import time

    path = tmp_path / "audit.db"
    SqliteAuditStore(path).close()  # create the schema once, so the workers race only on appends
    workers, per_worker = 3, 40
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(w),
                               str(per_worker), str(tmp_path), str(REPO / "platform.yaml")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            (tmp_path / f"ready-{w}").exists() or procs[w].poll() is not None
            for w in range(workers)):
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [(p.returncode, o.strip()) for p, (o, _) in zip(procs, outs, strict=True)] == \
        [(0, f"appended {per_worker}")] * workers, [e[-2000:] for _, e in outs]
    log = _log(path, every=7)
    result = log.verify()
    assert (result.ok, result.records) == (True, workers * per_worker), result.problem
    assert result.checkpoints == workers * per_worker // 7
    seen = sorted((e.actor, e.details["i"]) for e in log.events())
    assert seen == sorted((f"worker{w}", i) for w in range(workers) for i in range(per_worker))


def _append_through_inherited(store: SqliteAuditStore) -> None:
    assert store._conn is None, "the child still holds the parent's connection"
    AuditLog(CFG, store=store, signing_key=KEY, checkpoint_every=7).append(
        "child", "quota_change", "team/child")


def test_a_forked_child_sets_the_parents_connection_aside(tmp_path: Path) -> None:
    """SQLite: never use (or close) a connection across fork(). The child opens its own; the
    parent's keeps working."""
    store = SqliteAuditStore(tmp_path / "audit.db")
    log = AuditLog(CFG, store=store, signing_key=KEY, checkpoint_every=7)
    log.append("parent", "quota_change", "team/parent")
    child = multiprocessing.get_context("fork").Process(target=_append_through_inherited,
                                                        args=(store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    log.append("parent", "quota_change", "team/parent")
    result = log.verify()
    assert (result.ok, result.records) == (True, 3), result.problem
    assert [e.actor for e in log.events()] == ["parent", "child", "parent"]


def test_parallel_verify_agrees_with_the_single_process_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = _log(path, every=50)
    log.append_many({"actor": "a", "action": "promote", "target": f"m/{i}"} for i in range(400))
    assert log.verify(workers=3).ok
    body = sqlite3.connect(path).execute("SELECT body FROM audit_log WHERE id=300").fetchone()[0]
    _tamper(path, "UPDATE audit_log SET body=? WHERE id=300", _edit_body(body, "actor"))
    import mlplat.audit._log as audit_mod

    old = audit_mod.PARALLEL_MIN_RECORDS
    audit_mod.PARALLEL_MIN_RECORDS = 10
    try:
        parallel = log.verify(workers=3)
    finally:
        audit_mod.PARALLEL_MIN_RECORDS = old
    single = log.verify(workers=1)
    assert (parallel.ok, parallel.first_bad_seq) == (single.ok, single.first_bad_seq) == (False, 300)


# --------------------------------------------------------------------------- CLI


def test_cli_verify_head_and_purge(platform_config, platform_config_path) -> None:
    from typer.testing import CliRunner

    from mlplat.cli import app

    log = AuditLog(platform_config, clock=FakeClock())
    for i in range(3):
        log.append("alice", "promote", f"fraud/{i}", reason="green")
    runner = CliRunner()
    cfg_arg = ["-c", str(platform_config_path)]
    ok = runner.invoke(app, ["audit", "verify", *cfg_arg])
    assert ok.exit_code == 0 and "3 records" in ok.output, ok.output
    head = runner.invoke(app, ["audit", "head", *cfg_arg])
    assert head.output.strip() == f"3:{log.head()[1]}"
    path = platform_config.local_path("audit.db")
    body = sqlite3.connect(path).execute("SELECT body FROM audit_log WHERE id=2").fetchone()[0]
    _tamper(path, "UPDATE audit_log SET body=? WHERE id=2", _edit_body(body, "reason"))
    bad = runner.invoke(app, ["audit", "verify", "--json", *cfg_arg])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["first_bad_seq"] == 2
    refused = runner.invoke(app, ["audit", "purge", "--before", "2030-01-01",
                                  "--reason", "RET-1", *cfg_arg],
                            env={"MLPLAT_TOKEN": person_token(platform_config, "carol")})
    assert isinstance(refused.exception, UserError) and "retention" in str(refused.exception)
