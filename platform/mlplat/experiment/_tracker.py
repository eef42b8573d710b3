"""A tracking client that never loses a write and never blocks training on the server.

Every write (param, metric with step and timestamp, tag, artifact, run start/end) is first
committed to a local SQLite journal — WAL mode, ``synchronous=FULL`` (fsync per commit), so
it survives ``kill -9`` of the process and a power cut. A background flusher thread drains
the journal to MLflow with ``log_batch`` behind a circuit breaker:

* **closed** — batches flow; ``failure_threshold`` consecutive failures, or one timeout,
  open the breaker (a refused connection fails in milliseconds, so it opens well under 1 s);
* **open** — nothing is sent; writes keep landing in the journal at local-disk speed;
* **half-open** — after ``probe_interval_s`` one batch is tried; success closes the breaker
  and the backlog replays, failure re-opens it.

Replay is idempotent. Before a batch is sent its rows are marked *in flight*; on success they
are deleted. A batch whose outcome is unknown (timeout, connection cut, process killed) stays
in flight and is *verified* before it is resent: params and metrics the server already holds
are dropped from it (tags are overwrites, so resending is harmless), so nothing is stored
twice. Rows replay in write order, so each metric key keeps its step order. Runs started
while the server is down get a local id; the server run is created on replay, tagged
``mlplat.tracker_run=<local id>`` so a crash between "created" and "remembered" finds it
instead of creating a second one.

One process owns a journal at a time (an ``flock`` released by the kernel when the process
dies, ``kill -9`` included); a restarted job opening the same journal replays what the dead
one left.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlplat.errors import InfraError, UserError
from mlplat.experiment._sinks import MetricPoint, Sink, SinkRejected, SinkUnavailable, sink_for

log = logging.getLogger(__name__)

RUN_TAG = "mlplat.tracker_run"
"""Tag carrying the tracker's local run id on the server run (idempotent creation)."""
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
PENDING, INFLIGHT, REJECTED = 0, 1, 2
RETRY_WHILE_CLOSED_S = 0.1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    run TEXT NOT NULL,
    kind TEXT NOT NULL,            -- metric | param | tag | artifact | end
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    ts_ms INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS ops_state ON ops(state, seq);
CREATE TABLE IF NOT EXISTS runs (
    local_id TEXT PRIMARY KEY,
    server_id TEXT,
    experiment_id TEXT NOT NULL,
    run_name TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    create_attempted INTEGER NOT NULL DEFAULT 0
);
"""


BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` failures (or one timeout) → half-open probe.

    A plain class with an injectable clock, so its timing is unit-testable.

    Example:
        >>> b = CircuitBreaker(failure_threshold=2, probe_interval_s=1.0, clock=lambda: 0.0)
        >>> b.record_failure(); b.record_failure(); b.state
        'open'
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise UserError(f"failure_threshold must be >= 1, got {failure_threshold}.")
        self.failure_threshold = failure_threshold
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self.probe_interval_s:
            return "half_open"
        return self._state

    def allow(self) -> bool:
        """May a request be sent now? (In half-open: the single probe.)"""
        return self.state != "open"

    def record_success(self) -> None:
        self._state, self._failures = "closed", 0

    def record_failure(self, timeout: bool = False) -> None:
        self._failures += 1
        if self.state == "half_open" or timeout or self._failures >= self.failure_threshold:
            if self._state != "open":
                self.opened_count += 1
            self._state, self._opened_at = "open", self._clock()

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def seconds_until_probe(self) -> float:
        if self._state != "open":
            return 0.0
        return max(0.0, self.probe_interval_s - (self._clock() - self._opened_at))


@dataclass(frozen=True)
class TrackerStats:
    """A snapshot of the journal and the breaker."""

    pending: int
    in_flight: int
    rejected: int
    breaker: BreakerState
    breaker_opened: int
    sent_batches: int


class BufferedTracker:
    """MLflow logging through a durable local journal and a circuit breaker.

    Args:
        tracking_uri: MLflow tracking URI (``http(s)://`` → REST with short timeouts; a local
            ``sqlite:///`` store → ``MlflowClient``).
        buffer_path: The SQLite journal. Reopen the same path after a crash to replay.
        failure_threshold: Consecutive failures that open the breaker.
        probe_interval_s: Time the breaker stays open before a half-open probe.
        request_timeout_s: Read timeout of one request (connecting is capped at 0.5 s).
        flush_interval_s: How long the flusher waits for more writes before sending.
        sink: Use this backend instead of one built from ``tracking_uri`` (tests, tools).

    Raises:
        UserError: another live process holds the journal.

    Example:
        >>> t = BufferedTracker("http://127.0.0.1:5000", Path("/tmp/run.buffer.db"))
        >>> run = t.start_run("1", "nightly", tags={"team": "risk"})
        >>> t.log_metrics(run, {"loss": 0.4}, step=1)
        >>> t.close(timeout_s=30)   # drains the journal if the server is up
        True
    """

    def __init__(
        self,
        tracking_uri: str,
        buffer_path: Path,
        *,
        failure_threshold: int = 3,
        probe_interval_s: float = 1.0,
        request_timeout_s: float = 2.0,
        flush_interval_s: float = 0.05,
        sink: Sink | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.buffer_path = Path(buffer_path)
        self.buffer_path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.buffer_path.with_name(self.buffer_path.name + ".spool")
        self._lock_fh = open(self.buffer_path.with_name(self.buffer_path.name + ".lock"), "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_fh.close()
            raise UserError(
                f"Tracking buffer {self.buffer_path} is in use by another live process; give "
                "each concurrent job its own buffer_path (the default is per run name)."
            ) from exc
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()
        self._sink = sink or sink_for(tracking_uri, timeout_s=request_timeout_s)
        self.breaker = CircuitBreaker(failure_threshold, probe_interval_s)
        self._flush_interval_s = flush_interval_s
        self._db_lock = threading.Lock()
        self._db = self._open_db()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._sent_batches = 0
        self._server_ids: dict[str, str] = {}
        self._thread = threading.Thread(target=self._flush_loop, name="mlplat-tracker", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- journal

    def _open_db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.buffer_path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        return db

    def _append(self, rows: list[tuple[str, str, str, str, int, int]]) -> None:
        """Commit rows (run, kind, key, value, step, ts_ms) durably, then wake the flusher."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO ops(uid, run, kind, key, value, step, ts_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(uuid.uuid4().hex, *row) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._idle.clear()
        self._wake.set()

    # ----------------------------------------------------------------- public writes

    def start_run(
        self, experiment_id: str, run_name: str, tags: dict[str, str] | None = None
    ) -> str:
        """Start a run; returns the tracker's run handle at once (the server run is created
        by the flusher, now or when the server is back).

        Example:
            >>> run = tracker.start_run("1", "fraud-nightly", {"team": "risk"})
        """
        local_id = uuid.uuid4().hex
        with self._db_lock:
            self._db.execute(
                "INSERT INTO runs(local_id, experiment_id, run_name, tags_json, start_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (local_id, str(experiment_id), run_name, json.dumps(tags or {}), _now_ms()),
            )
        self._wake.set()
        return local_id

    def attach_run(self, server_run_id: str) -> str:
        """Log to an existing server run; returns the handle to pass to the log methods."""
        with self._db_lock:
            self._db.execute(
                "INSERT OR IGNORE INTO runs(local_id, server_id, experiment_id, run_name, "
                "tags_json, start_ms) VALUES (?, ?, '', '', '{}', ?)",
                (server_run_id, server_run_id, _now_ms()),
            )
        return server_run_id

    def log_metric(
        self, run: str, key: str, value: float, step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Journal one metric value (durable when this returns)."""
        self.log_metrics(run, {key: value}, step=step, timestamp_ms=timestamp_ms)

    def log_metrics(
        self, run: str, metrics: dict[str, float], step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Journal several metrics of one step in one commit (one fsync).

        Example:
            >>> tracker.log_metrics(run, {"train_loss": 0.41, "lr": 0.01}, step=120)
        """
        ts = _now_ms() if timestamp_ms is None else int(timestamp_ms)
        self._append([(run, "metric", k, repr(float(v)), int(step), ts) for k, v in metrics.items()])

    def log_params(self, run: str, params: dict[str, Any]) -> None:
        """Journal params (stringified as MLflow does)."""
        ts = _now_ms()
        self._append([(run, "param", k, str(v), 0, ts) for k, v in params.items()])

    def set_tags(self, run: str, tags: dict[str, Any]) -> None:
        """Journal tags."""
        ts = _now_ms()
        self._append([(run, "tag", k, str(v), 0, ts) for k, v in tags.items()])

    def log_artifact(self, run: str, local_path: Path | str, artifact_path: str = "") -> None:
        """Copy ``local_path`` into the journal's spool (fsynced), then journal the upload."""
        src = Path(local_path)
        if not src.is_file():
            raise UserError(f"log_artifact: {src} is not a file.")
        self._append([(run, "artifact", artifact_path, self._spool(src), 0, _now_ms())])

    def log_artifacts(self, run: str, local_dir: Path | str, artifact_path: str = "") -> None:
        """``log_artifact`` for every file under ``local_dir``, keeping the folder layout."""
        root = Path(local_dir)
        rows = []
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            sub = f.parent.relative_to(root).as_posix()
            dest = "/".join(x for x in (artifact_path.strip("/"), sub if sub != "." else "") if x)
            rows.append((run, "artifact", dest, self._spool(f), 0, _now_ms()))
        if rows:
            self._append(rows)

    def end_run(self, run: str, status: str = "FINISHED") -> None:
        """Journal the run's end (after everything logged before it)."""
        self._append([(run, "end", "status", status, 0, _now_ms())])

    def _spool(self, src: Path) -> str:
        folder = self.spool_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        dest = folder / src.name
        shutil.copyfile(src, dest)
        with dest.open("rb") as fh:
            os.fsync(fh.fileno())
        return str(dest)

    # ----------------------------------------------------------------- status / lifecycle

    def stats(self) -> TrackerStats:
        """Counts of pending / in-flight / rejected rows and the breaker state."""
        with self._db_lock:
            counts = dict(self._db.execute("SELECT state, COUNT(*) FROM ops GROUP BY state").fetchall())
            unsent_runs = self._db.execute(
                "SELECT COUNT(*) FROM runs WHERE server_id IS NULL"
            ).fetchone()[0]
        return TrackerStats(
            pending=int(counts.get(PENDING, 0)) + int(unsent_runs),
            in_flight=int(counts.get(INFLIGHT, 0)),
            rejected=int(counts.get(REJECTED, 0)),
            breaker=self.breaker.state,
            breaker_opened=self.breaker.opened_count,
            sent_batches=self._sent_batches,
        )

    def server_run_id(self, run: str, timeout_s: float = 0.0) -> str | None:
        """The server's id for ``run`` once created (waits up to ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._db_lock:
                row = self._db.execute(
                    "SELECT server_id FROM runs WHERE local_id = ?", (run,)
                ).fetchone()
            if row and row[0]:
                return str(row[0])
            if time.monotonic() >= deadline:
                return None
            self._wake.set()
            time.sleep(0.02)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the journal is drained (True) or ``timeout_s`` passed (False).

        Example:
            >>> tracker.flush(timeout_s=10)
            True
        """
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.stats()
            if s.pending == 0 and s.in_flight == 0:
                return True
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self, timeout_s: float = 30.0) -> bool:
        """Drain for up to ``timeout_s``, then stop. Returns True when nothing is left; what is
        left stays in the journal and replays the next time it is opened."""
        drained = self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._db_lock:
            self._db.close()
        fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
        self._lock_fh.close()
        return drained

    def __enter__(self) -> BufferedTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- the flusher

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            try:
                progressed = self._flush_once()
            except Exception:  # never let the flusher die: log and back off
                log.exception("tracking flusher failed; retrying")
                progressed = False
            if not progressed:
                self._idle.set()
                # Failing but not yet open: retry soon, so a dead server opens the breaker
                # within a few hundred ms even when no new write wakes the flusher.
                retry = RETRY_WHILE_CLOSED_S if self.breaker.consecutive_failures else 0.5
                wait = self.breaker.seconds_until_probe() or retry
                self._wake.wait(wait)
                self._wake.clear()
            elif self._flush_interval_s:
                self._wake.wait(self._flush_interval_s)  # let a burst of writes accumulate
                self._wake.clear()

    def _send(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One request through the breaker; raises SinkUnavailable when it is open."""
        if not self.breaker.allow():
            raise SinkUnavailable("circuit open")
        try:
            result = fn(*args)
        except SinkUnavailable as exc:
            self.breaker.record_failure(timeout="timed out" in str(exc).lower())
            raise
        except SinkRejected:
            self.breaker.record_success()  # the server answered: it is up
            raise
        self.breaker.record_success()
        return result

    def _flush_once(self) -> bool:
        """Deliver the oldest run's next batch. True when something was delivered."""
        with self._db_lock:
            head = self._db.execute(
                "SELECT run FROM ops WHERE state IN (?, ?) ORDER BY seq LIMIT 1",
                (PENDING, INFLIGHT),
            ).fetchone()
            orphan = self._db.execute(
                "SELECT local_id FROM runs WHERE server_id IS NULL LIMIT 1"
            ).fetchone()
        if head is None and orphan is None:
            return False
        run = str(head[0]) if head is not None else str(orphan[0])
        try:
            server_id = self._ensure_server_run(run)
            if head is None:
                return True
            return self._deliver(run, server_id)
        except SinkUnavailable:
            return False

    def _ensure_server_run(self, run: str) -> str:
        if run in self._server_ids:
            return self._server_ids[run]
        with self._db_lock:
            row = self._db.execute(
                "SELECT server_id, experiment_id, run_name, tags_json, start_ms, "
                "create_attempted FROM runs WHERE local_id = ?",
                (run,),
            ).fetchone()
        if row is None:  # logged to a handle nobody started: treat it as a server run id
            self.attach_run(run)
            self._server_ids[run] = run
            return run
        server_id, experiment_id, run_name, tags_json, start_ms, attempted = row
        if not server_id:
            if attempted:  # a previous attempt's outcome is unknown: look before creating
                server_id = self._send(self._sink.find_run, experiment_id, RUN_TAG, run)
            if not server_id:
                with self._db_lock:
                    self._db.execute(
                        "UPDATE runs SET create_attempted = 1 WHERE local_id = ?", (run,)
                    )
                tags = {**json.loads(tags_json), RUN_TAG: run}
                server_id = self._send(
                    self._sink.create_run, experiment_id, run_name, int(start_ms), tags
                )
            with self._db_lock:
                self._db.execute(
                    "UPDATE runs SET server_id = ? WHERE local_id = ?", (server_id, run)
                )
        self._server_ids[run] = str(server_id)
        return str(server_id)

    def _next_batch(self, run: str) -> list[tuple[Any, ...]]:
        """The run's oldest rows up to MLflow's batch limits, stopping before a row that must
        go alone (artifact, end) unless it is first."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT seq, kind, key, value, step, ts_ms, state FROM ops "
                "WHERE run = ? AND state IN (?, ?) ORDER BY seq LIMIT ?",
                (run, PENDING, INFLIGHT, MAX_METRICS_PER_BATCH),
            ).fetchall()
        if rows and rows[0][1] in ("artifact", "end"):
            return rows[:1]
        batch: list[tuple[Any, ...]] = []
        params: set[str] = set()
        n_params = n_tags = 0
        for r in rows:
            kind, key = r[1], r[2]
            if kind in ("artifact", "end"):
                break
            if kind == "param":
                if key in params or n_params >= MAX_PARAMS_TAGS_PER_BATCH:
                    break  # a repeated key goes in the next batch (MLflow rejects duplicates)
                params.add(key)
                n_params += 1
            if kind == "tag":
                if n_tags >= MAX_PARAMS_TAGS_PER_BATCH:
                    break
                n_tags += 1
            batch.append(r)
        return batch

    def _verify(self, server_id: str, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Drop in-flight rows the server already holds (their earlier send did land)."""
        uncertain = [r for r in batch if r[6] == INFLIGHT]
        if not uncertain:
            return batch
        present: set[int] = set()
        if any(r[1] == "param" for r in uncertain):
            have = self._send(self._sink.params, server_id)
            present |= {r[0] for r in uncertain if r[1] == "param" and have.get(r[2]) == r[3]}
        for key in sorted({r[2] for r in uncertain if r[1] == "metric"}):
            stored = {
                (m.step, m.timestamp_ms, m.value)
                for m in self._send(self._sink.metric_history, server_id, key)
            }
            present |= {
                r[0]
                for r in uncertain
                if r[1] == "metric" and r[2] == key and (r[4], r[5], float(r[3])) in stored
            }
        if present:
            self._delete([r[0] for r in batch if r[0] in present])
        return [r for r in batch if r[0] not in present]

    def _delete(self, seqs: list[int]) -> None:
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM ops WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def _mark(self, seqs: list[int], state: int, error: str | None = None) -> None:
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE ops SET state = ?, error = ? WHERE seq = ?",
                [(state, error, s) for s in seqs],
            )
            self._db.execute("COMMIT")

    def _deliver(self, run: str, server_id: str) -> bool:
        batch = self._next_batch(run)
        if not batch:
            return False
        batch = self._verify(server_id, batch)
        if not batch:
            return True
        seqs = [r[0] for r in batch]
        self._mark(seqs, INFLIGHT)  # from here the outcome is unknown until the answer comes
        kind = batch[0][1]
        try:
            if kind == "artifact":
                path = Path(batch[0][3])
                if path.is_file():
                    self._send(self._sink.log_artifact, server_id, path, batch[0][2])
                shutil.rmtree(path.parent, ignore_errors=True)
            elif kind == "end":
                self._send(self._sink.set_terminated, server_id, batch[0][3], int(batch[0][5]))
            else:
                metrics = [
                    MetricPoint(r[2], float(r[3]), int(r[5]), int(r[4]))
                    for r in batch
                    if r[1] == "metric"
                ]
                params = {r[2]: r[3] for r in batch if r[1] == "param"}
                tags: dict[str, str] = {}
                for r in batch:
                    if r[1] == "tag":
                        tags[r[2]] = r[3]  # the last write of a key wins, as on the server
                self._send(self._sink.log_batch, server_id, metrics, params, tags)
        except SinkRejected as exc:
            # The server refused (e.g. a param re-logged with another value). One bad row
            # must not sink its batch: resend row by row; keep refused rows for inspection
            # (never retried) and carry on with the rest.
            if len(batch) > 1:
                self._mark(seqs, PENDING)
                for row in batch:
                    self._send_single(run, server_id, row)
                return True
            log.error("MLflow rejected a buffered write of run %s: %s", run, exc)
            self._mark(seqs, REJECTED, str(exc)[:1000])
            return True
        self._delete(seqs)
        self._sent_batches += 1
        return True

    def _send_single(self, run: str, server_id: str, row: tuple[Any, ...]) -> None:
        seq, kind, key, value, step, ts = row[:6]
        metrics = [MetricPoint(key, float(value), int(ts), int(step))] if kind == "metric" else []
        params = {key: value} if kind == "param" else {}
        tags = {key: value} if kind == "tag" else {}
        self._mark([seq], INFLIGHT)
        try:
            self._send(self._sink.log_batch, server_id, metrics, params, tags)
        except SinkRejected as exc:
            log.error("MLflow rejected a buffered %s '%s' of run %s: %s", kind, key, run, exc)
            self._mark([seq], REJECTED, str(exc)[:1000])
            return
        self._delete([seq])
        self._sent_batches += 1


def _now_ms() -> int:
    return int(time.time() * 1000)


def buffer_path_for(root: str, local_path: Callable[[str], Path], name: str) -> Path:
    """Default journal location: ``<root>/mlflow/buffer/<name>.db`` for a local root, else
    ``$MLPLAT_TRACKING_BUFFER_DIR`` or ``~/.mlplat/tracking-buffer`` (it must be local disk)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "default"
    if "://" not in root:
        return local_path(f"mlflow/buffer/{safe}.db")
    base = os.environ.get("MLPLAT_TRACKING_BUFFER_DIR") or str(
        Path.home() / ".mlplat" / "tracking-buffer"
    )
    return Path(base) / f"{safe}.db"


def open_tracker(cfg: Any, name: str, **kwargs: Any) -> BufferedTracker:
    """A ``BufferedTracker`` on ``cfg``'s tracking store with the default journal for ``name``.

    Raises:
        InfraError: the journal folder cannot be created.

    Example:
        >>> with open_tracker(load_config(), "fraud-nightly") as t:
        ...     t.log_metrics(t.start_run("1", "fraud-nightly"), {"loss": 0.3}, step=1)
    """
    from mlplat.experiment._store import tracking_uri

    path = buffer_path_for(cfg.root(), cfg.local_path, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"Cannot create the tracking buffer folder {path.parent}: {exc}") from exc
    return BufferedTracker(tracking_uri(cfg), path, **kwargs)
