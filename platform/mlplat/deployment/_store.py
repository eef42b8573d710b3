"""Where the promotion controller keeps its state: a SQLite file, so a restart loses nothing.

Two tables: ``apps`` (each app the controller manages: its config, model, last good version,
the last ``staging`` alias it acted on) and ``rollouts`` (one row per promotion with its stage,
when the stage started — wall-clock time, valid across restarts — and its history).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    app TEXT PRIMARY KEY, model TEXT NOT NULL, app_json TEXT NOT NULL, app_path TEXT NOT NULL,
    last_good TEXT, staging_seen TEXT, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, model TEXT NOT NULL,
    baseline TEXT NOT NULL, candidate TEXT NOT NULL, stage_idx INTEGER NOT NULL,
    applied_idx INTEGER NOT NULL, stage_started_at REAL, status TEXT NOT NULL,
    override_by TEXT, override_reason TEXT, started_by TEXT NOT NULL, source TEXT NOT NULL,
    reason TEXT NOT NULL, history TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_app ON rollouts(app, status);
"""

RUNNING, DONE, ROLLED_BACK, REJECTED = "running", "done", "rolled_back", "rejected"


@dataclass
class ManagedApp:
    """An app the controller manages."""

    app: str
    model: str
    app_json: str
    app_path: str
    last_good: str | None
    staging_seen: str | None


@dataclass
class Rollout:
    """One promotion of ``candidate`` over ``baseline`` (the last good version)."""

    id: int
    app: str
    model: str
    baseline: str
    candidate: str
    stage_idx: int
    applied_idx: int
    stage_started_at: float | None
    status: str
    override_by: str | None
    override_reason: str | None
    started_by: str
    source: str
    reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PromotionStore:
    """SQLite-backed state of the promotion controller (WAL, safe across processes).

    Example:
        >>> store = PromotionStore(tmp_path / "promotions.db")
        >>> store.upsert_app("fraud", "fraud", "{}", "/apps/fraud", last_good="1", now=0.0)
        >>> store.app("fraud").last_good
        '1'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.row_factory = sqlite3.Row
        return db

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            db = self._connect()
            try:
                return list(db.execute(sql, args).fetchall())
            finally:
                db.close()

    # ------------------------------------------------------------------ apps

    def upsert_app(self, app: str, model: str, app_json: str, app_path: str, *,
                   last_good: str | None, now: float, replace: bool = True) -> None:
        """Register (or refresh) a managed app. ``replace=False`` keeps a known ``last_good``
        (a replica restarting must not overwrite what the controller decided)."""
        keep = ("COALESCE(excluded.last_good, apps.last_good)" if replace
                else "COALESCE(apps.last_good, excluded.last_good)")
        self._exec(
            "INSERT INTO apps(app, model, app_json, app_path, last_good, staging_seen, updated_at)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT(app) DO UPDATE SET model=excluded.model,"
            f" app_json=excluded.app_json, app_path=excluded.app_path, last_good={keep},"
            " updated_at=excluded.updated_at",
            (app, model, app_json, app_path, last_good, now))

    def app(self, app: str) -> ManagedApp | None:
        rows = self._exec("SELECT * FROM apps WHERE app = ?", (app,))
        return ManagedApp(**{k: rows[0][k] for k in ManagedApp.__dataclass_fields__}) if rows else None

    def apps(self) -> list[ManagedApp]:
        return [ManagedApp(**{k: r[k] for k in ManagedApp.__dataclass_fields__})
                for r in self._exec("SELECT * FROM apps ORDER BY app")]

    def app_for_model(self, model: str) -> list[ManagedApp]:
        return [a for a in self.apps() if a.model == model]

    def set_last_good(self, app: str, version: str, now: float) -> None:
        self._exec("UPDATE apps SET last_good = ?, updated_at = ? WHERE app = ?", (version, now, app))

    def set_staging_seen(self, app: str, version: str | None, now: float) -> None:
        self._exec("UPDATE apps SET staging_seen = ?, updated_at = ? WHERE app = ?",
                   (version, now, app))

    def forget_app(self, app: str) -> None:
        self._exec("DELETE FROM apps WHERE app = ?", (app,))

    # ------------------------------------------------------------------ rollouts

    def _rollout(self, r: sqlite3.Row) -> Rollout:
        data = {k: r[k] for k in r.keys()}
        data["history"] = json.loads(data["history"])
        return Rollout(**data)

    def create_rollout(self, *, app: str, model: str, baseline: str, candidate: str,
                       started_by: str, source: str, reason: str, status: str,
                       history: list[dict[str, Any]], now: float) -> Rollout:
        with self._lock:
            db = self._connect()
            try:
                cur = db.execute(
                    "INSERT INTO rollouts(app, model, baseline, candidate, stage_idx, applied_idx,"
                    " stage_started_at, status, started_by, source, reason, history, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, 0, -1, NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (app, model, baseline, candidate, status, started_by, source, reason,
                     json.dumps(history), now, now))
                row = db.execute("SELECT * FROM rollouts WHERE id = ?", (cur.lastrowid,)).fetchone()
            finally:
                db.close()
        return self._rollout(row)

    def save(self, r: Rollout, now: float) -> None:
        r.updated_at = now
        self._exec(
            "UPDATE rollouts SET stage_idx=?, applied_idx=?, stage_started_at=?, status=?,"
            " override_by=?, override_reason=?, history=?, updated_at=? WHERE id=?",
            (r.stage_idx, r.applied_idx, r.stage_started_at, r.status, r.override_by,
             r.override_reason, json.dumps(r.history), now, r.id))

    def active(self, app: str | None = None) -> list[Rollout]:
        if app is None:
            rows = self._exec("SELECT * FROM rollouts WHERE status = ? ORDER BY id", (RUNNING,))
        else:
            rows = self._exec("SELECT * FROM rollouts WHERE status = ? AND app = ? ORDER BY id",
                              (RUNNING, app))
        return [self._rollout(r) for r in rows]

    def latest(self, app: str) -> Rollout | None:
        rows = self._exec("SELECT * FROM rollouts WHERE app = ? ORDER BY id DESC LIMIT 1", (app,))
        return self._rollout(rows[0]) if rows else None

    def latest_with_status(self, app: str, status: str) -> Rollout | None:
        """The newest rollout of ``app`` in ``status`` (e.g. the last completed one)."""
        rows = self._exec("SELECT * FROM rollouts WHERE app = ? AND status = ? "
                          "ORDER BY id DESC LIMIT 1", (app, status))
        return self._rollout(rows[0]) if rows else None

    def latest_for(self, app: str, candidate: str) -> Rollout | None:
        """The newest rollout of ``candidate`` in ``app`` (None: it was never promoted)."""
        rows = self._exec("SELECT * FROM rollouts WHERE app = ? AND candidate = ? "
                          "ORDER BY id DESC LIMIT 1", (app, candidate))
        return self._rollout(rows[0]) if rows else None

    def was_production(self, app: str, version: str) -> bool:
        """True when ``version`` served ``app`` as its production version at some point (the
        baseline of a rollout, or the candidate of a completed one)."""
        return bool(self._exec(
            "SELECT 1 FROM rollouts WHERE app = ? AND (baseline = ? OR (candidate = ? AND "
            "status = ?)) LIMIT 1", (app, version, version, DONE)))

    def get(self, rollout_id: int) -> Rollout | None:
        rows = self._exec("SELECT * FROM rollouts WHERE id = ?", (rollout_id,))
        return self._rollout(rows[0]) if rows else None
