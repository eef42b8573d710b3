"""The priority job queue's logic: admission under per-team, per-pool quotas, over a store.

Plain Python (a store and a clock, no Ray), so unit tests drive it directly; the actor in
``_service`` is a thin shell that persists nothing itself.

Admission rules:

- a request larger than its team's whole quota in the pool is refused at submit (it could
  never run), with the request and the quota in the message;
- per (team, pool), queued jobs are admitted in priority order (platform.yaml
  ``scheduling.priority_classes`` value, higher first), then submission time; admission stops
  at the first job that does not fit the team's free quota, so a large high-priority job is
  not starved by smaller low-priority ones behind it;
- teams are independent: one team's backlog never delays another team's jobs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlplat.config import PlatformConfig, PoolQuota
from mlplat.errors import NotFoundError, UserError, did_you_mean

JobState = Literal["QUEUED", "STARTING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "CANCELLED"]
ACTIVE_STATES: frozenset[str] = frozenset({"STARTING", "RUNNING"})
"""States that hold quota."""
TERMINAL_STATES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "CANCELLED"})


@dataclass(frozen=True)
class JobRequest:
    """What a job asks for: who pays, how urgent, which pool and how much of it."""

    team: str
    script: str
    args: list[str] = field(default_factory=list)
    model: str = ""
    priority: str = ""
    """A name from platform.yaml scheduling.priority_classes; empty = the default class."""
    pool: str = "cpu"
    cpus: float = 1.0
    gpus: float = 0.0
    memory_gib: float = 0.0


@dataclass
class QueueEntry:
    """One job in the queue, as stored and as `mlplat jobs list` shows it."""

    id: str
    team: str
    script: str
    args: list[str]
    model: str
    priority: str
    priority_value: int
    pool: str
    cpus: float
    gpus: float
    memory_gib: float
    state: str
    reason: str
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    ray_job_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_jobs_state ON queue_jobs(state);
"""


class QueueStore:
    """SQLite-backed queue state: survives the actor's restarts (WAL, one writer at a time).

    Example:
        >>> store = QueueStore(Path("/tmp/q.db"))
        >>> store.all()
        []
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def put(self, entry: QueueEntry) -> None:
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO queue_jobs (id, body, state, submitted_at) "
                "VALUES (?, ?, ?, ?)",
                (entry.id, json.dumps(entry.to_json()), entry.state, entry.submitted_at),
            )

    def get(self, job_id: str) -> QueueEntry:
        with self._connect() as db:
            row = db.execute("SELECT body FROM queue_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No queued job '{job_id}'; see `mlplat jobs list`.")
        return QueueEntry(**json.loads(row[0]))

    def all(self, states: frozenset[str] | None = None) -> list[QueueEntry]:
        with self._connect() as db:
            rows = db.execute("SELECT body FROM queue_jobs ORDER BY submitted_at, id").fetchall()
        entries = [QueueEntry(**json.loads(r[0])) for r in rows]
        return [e for e in entries if states is None or e.state in states]


# --------------------------------------------------------------------------- logic


def _fmt(value: float) -> str:
    return f"{value:g}"


def team_quota(cfg: PlatformConfig, team: str, pool: str) -> PoolQuota:
    """``team``'s quota in ``pool`` from platform.yaml; a pool it has no quota for = zero.

    Raises:
        NotFoundError: unknown team or pool (the message lists the known ones).
    """
    quotas = cfg.team(team).quotas
    cfg.pool(pool)
    return quotas.get(pool) or PoolQuota(cpu=0, gpu=0, memory_gib=0, max_concurrent_trials=0)  # type: ignore[call-overload]


def validate_request(cfg: PlatformConfig, request: JobRequest) -> tuple[str, int]:
    """Check a request before it is queued; returns its priority class name and value.

    Needs no cluster and no store, so the CLI runs it before any cluster time is spent.

    Raises:
        NotFoundError: unknown team or pool.
        UserError: unknown priority, a negative amount, or more than the team's whole quota
            in the pool (such a job could never be admitted).

    Example:
        >>> validate_request(cfg, JobRequest(team="risk", script="jobs/train.py",
        ...                                  priority="batch-high", pool="cpu", cpus=1))
        ('batch-high', 10000)
    """
    priority = request.priority or cfg.scheduling.default_priority
    classes = cfg.scheduling.priority_classes
    if priority not in classes:
        raise UserError(
            f"Unknown priority '{priority}'.{did_you_mean(priority, classes)} Priorities "
            f"(platform.yaml scheduling.priority_classes): {sorted(classes)}."
        )
    quota = team_quota(cfg, request.team, request.pool)
    asked = {"cpu": request.cpus, "gpu": request.gpus, "memory_gib": request.memory_gib}
    for name, amount in asked.items():
        if amount < 0:
            raise UserError(f"Job request {name}={_fmt(amount)} must be >= 0.")
        limit = float(getattr(quota, name))
        if amount > limit:
            raise UserError(
                f"Job asks for {name}={_fmt(amount)} on pool '{request.pool}' but team "
                f"'{request.team}' has a quota of {name}={_fmt(limit)} there in total "
                f"(platform.yaml teams.{request.team}.quotas.{request.pool}); it could "
                f"never start. Ask for at most {_fmt(limit)} or raise the quota."
            )
    return priority, classes[priority].value


class JobQueue:
    """Admission control over a ``QueueStore``; the clock is injectable for tests.

    Example:
        >>> queue = JobQueue(cfg, QueueStore(tmp / "q.db"))
        >>> entry = queue.submit(JobRequest(team="risk", script="jobs/train.py",
        ...                                 pool="training-spot", cpus=2))
        >>> [e.id for e in queue.admit()] == [entry.id]
        True
    """

    def __init__(
        self, cfg: PlatformConfig, store: QueueStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock

    # ---- submit

    def quota(self, team: str, pool: str) -> PoolQuota:
        """The team's quota in ``pool``."""
        return team_quota(self.cfg, team, pool)

    def submit(self, request: JobRequest) -> QueueEntry:
        """Validate ``request`` (see ``validate_request``) and enqueue it."""
        priority, value = validate_request(self.cfg, request)
        entry = QueueEntry(
            id=f"mlplat-{request.team}-{uuid.uuid4().hex[:10]}",
            team=request.team,
            script=request.script,
            args=list(request.args),
            model=request.model,
            priority=priority,
            priority_value=value,
            pool=request.pool,
            cpus=request.cpus,
            gpus=request.gpus,
            memory_gib=request.memory_gib,
            state="QUEUED",
            reason="waiting for admission",
            submitted_at=self.clock(),
        )
        self.store.put(entry)
        return entry

    # ---- admission

    def usage(self, team: str, pool: str) -> dict[str, float]:
        """Quota the team's active (starting or running) jobs hold in ``pool``."""
        held = {"cpu": 0.0, "gpu": 0.0, "memory_gib": 0.0}
        for e in self.store.all(ACTIVE_STATES):
            if e.team == team and e.pool == pool:
                held["cpu"] += e.cpus
                held["gpu"] += e.gpus
                held["memory_gib"] += e.memory_gib
        return held

    def admit(self) -> list[QueueEntry]:
        """Mark every queued job that fits its team's free quota STARTING and return them.

        Jobs that stay queued get a ``reason`` saying what they wait for.
        """
        queued = self.store.all(frozenset({"QUEUED"}))
        groups: dict[tuple[str, str], list[QueueEntry]] = {}
        for e in queued:
            groups.setdefault((e.team, e.pool), []).append(e)
        admitted: list[QueueEntry] = []
        for (team, pool), entries in groups.items():
            entries.sort(key=lambda e: (-e.priority_value, e.submitted_at, e.id))
            quota = self.quota(team, pool)
            held = self.usage(team, pool)
            blocker: QueueEntry | None = None
            for e in entries:
                if blocker is not None:
                    reason = (
                        f"behind {blocker.id} ({blocker.priority}) of team {team}, "
                        f"which waits for quota on {pool}"
                    )
                else:
                    short = [
                        f"{name} {_fmt(held[name])}+{_fmt(ask)} > {_fmt(limit)}"
                        for name, ask, limit in (
                            ("cpu", e.cpus, quota.cpu),
                            ("gpu", e.gpus, float(quota.gpu)),
                            ("memory_gib", e.memory_gib, quota.memory_gib),
                        )
                        if held[name] + ask > limit + 1e-9
                    ]
                    if not short:
                        held["cpu"] += e.cpus
                        held["gpu"] += e.gpus
                        held["memory_gib"] += e.memory_gib
                        e.state, e.reason = "STARTING", "admitted"
                        self.store.put(e)
                        admitted.append(e)
                        continue
                    blocker = e
                    reason = (
                        f"waiting for quota: team {team} on {pool} holds+asks "
                        f"{'; '.join(short)} (held + this job > quota)"
                    )
                if e.reason != reason:
                    e.reason = reason
                    self.store.put(e)
        return admitted

    # ---- lifecycle

    def mark_running(self, job_id: str, ray_job_id: str) -> QueueEntry:
        e = self.store.get(job_id)
        e.state, e.ray_job_id, e.started_at, e.reason = "RUNNING", ray_job_id, self.clock(), ""
        self.store.put(e)
        return e

    def requeue(self, job_id: str, reason: str) -> QueueEntry:
        """Back to QUEUED (a submission that never reached Ray), keeping its place."""
        e = self.store.get(job_id)
        e.state, e.reason = "QUEUED", reason
        self.store.put(e)
        return e

    def finish(self, job_id: str, state: str, reason: str = "") -> QueueEntry:
        """Record a terminal state; the job's quota is free from now on."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"not a terminal state: {state}")
        e = self.store.get(job_id)
        e.state, e.finished_at, e.reason = state, self.clock(), reason
        self.store.put(e)
        return e

    def cancel(self, job_id: str) -> QueueEntry:
        """Cancel a job that has not started; a running one must be stopped instead."""
        e = self.store.get(job_id)
        if e.state != "QUEUED":
            raise UserError(
                f"Job {job_id} is {e.state}; only queued jobs can be cancelled "
                f"(stop a running one with `ray job stop {e.ray_job_id or job_id}`)."
            )
        return self.finish(job_id, "CANCELLED", "cancelled before it started")

    def entries(self) -> list[QueueEntry]:
        return self.store.all()
