"""SQLite store of the drift monitor: what must survive an actor restart.

References (cached profile, the reference sample for the Evidently report, reference scores),
the open windows and their sampled rows, closed-window reports, per-window predictions (for the
late-outcome join), outcomes, and the retrain policy's last submission per model. One file
under the local storage root (``<root>/monitoring/drift.db``); ``":memory:"`` for tests.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlplat._sqlite import open_store_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (model TEXT, version TEXT, profile TEXT, frame TEXT, scores TEXT,
    set_at REAL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS windows (model TEXT, version TEXT, opened_at REAL, dropped INTEGER,
    PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT,
    version TEXT, rows TEXT, scores TEXT, ids TEXT);
CREATE TABLE IF NOT EXISTS reports (seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT,
    version TEXT, window_start REAL, window_end REAL, share REAL, severity TEXT, body TEXT);
CREATE TABLE IF NOT EXISTS predictions (model TEXT, version TEXT, window_end REAL, id TEXT,
    score REAL);
CREATE INDEX IF NOT EXISTS predictions_id ON predictions (id);
CREATE TABLE IF NOT EXISTS outcomes (id TEXT PRIMARY KEY, model TEXT, label INTEGER,
    value_usd REAL, source TEXT, ts REAL);
CREATE TABLE IF NOT EXISTS retrain (model TEXT PRIMARY KEY, submitted_at REAL, job_id TEXT,
    version TEXT, episode_open INTEGER);
CREATE TABLE IF NOT EXISTS retrain_targets (model TEXT PRIMARY KEY, body TEXT);
CREATE TABLE IF NOT EXISTS served (seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT,
    window_end REAL, rows TEXT);
CREATE INDEX IF NOT EXISTS served_model_end ON served (model, window_end);
"""


class DriftStore:
    """Thread-safe SQLite persistence for ``DriftMonitor`` (WAL, one connection, one lock).

    Example:
        >>> store = DriftStore(":memory:")
        >>> store.latest_reports()
        {}
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = open_store_db(self.path, _SCHEMA, "drift store")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # ---- references

    def put_reference(self, model: str, version: str, profile: dict[str, Any],
                      frame: list[dict[str, Any]], scores: list[float] | None, at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO refs VALUES (?,?,?,?,?,?)",
                       (model, version, json.dumps(profile), json.dumps(frame, default=str),
                        None if scores is None else json.dumps(scores), at))

    def references(self) -> list[tuple[str, str, dict[str, Any], list[dict[str, Any]], list[float] | None]]:
        return [(m, v, json.loads(p), json.loads(f), None if s is None else json.loads(s))
                for m, v, p, f, s in self._rows(
                    "SELECT model, version, profile, frame, scores FROM refs")]

    # ---- open windows and their samples

    def open_window(self, model: str, version: str, opened_at: float, dropped: int = 0) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO windows VALUES (?,?,?,?)",
                       (model, version, opened_at, dropped))

    def windows(self) -> list[tuple[str, str, float, int]]:
        return [(m, v, float(o), int(d)) for m, v, o, d in
                self._rows("SELECT model, version, opened_at, dropped FROM windows")]

    def add_samples(self, model: str, version: str, rows: list[dict[str, Any]],
                    scores: list[float], ids: list[str] | None, dropped: int) -> int:
        """Store a batch; returns its sequence number (0 when only drops were counted)."""
        seq = 0
        with self._tx() as db:
            if rows:
                seq = db.execute("INSERT INTO samples (model, version, rows, scores, ids) "
                           "VALUES (?,?,?,?,?)",
                           (model, version, json.dumps(rows, default=str), json.dumps(scores),
                            None if ids is None else json.dumps(ids))).lastrowid or 0
            if dropped:
                db.execute("UPDATE windows SET dropped = dropped + ? WHERE model=? AND version=?",
                           (dropped, model, version))
        return seq

    def samples(self, model: str, version: str) -> list[tuple[int, list[dict[str, Any]], list[float], list[str] | None]]:
        return [(int(seq), json.loads(r), json.loads(s), None if i is None else json.loads(i))
                for seq, r, s, i in self._rows(
                    "SELECT seq, rows, scores, ids FROM samples WHERE model=? AND version=? "
                    "ORDER BY seq", (model, version))]

    def close_window(self, model: str, version: str, up_to_seq: int, report: dict[str, Any],
                     window_start: float, window_end: float, share: float, severity: str,
                     predictions: list[tuple[str, float]]) -> None:
        """Record the report, its predictions, drop the window's samples, open the next window."""
        with self._tx() as db:
            db.execute("DELETE FROM samples WHERE model=? AND version=? AND seq <= ?",
                       (model, version, up_to_seq))
            db.execute("INSERT INTO reports (model, version, window_start, window_end, share, "
                       "severity, body) VALUES (?,?,?,?,?,?,?)",
                       (model, version, window_start, window_end, share, severity,
                        json.dumps(report)))
            db.executemany("INSERT INTO predictions VALUES (?,?,?,?,?)",
                           [(model, version, window_end, i, s) for i, s in predictions])
            db.execute("INSERT OR REPLACE INTO windows VALUES (?,?,?,COALESCE((SELECT dropped "
                       "FROM windows WHERE model=? AND version=?), 0))",
                       (model, version, window_end, model, version))

    def add_served(self, model: str, window_end: float, rows: list[dict[str, Any]],
                   keep_after: float) -> None:
        """Keep a closed window's served rows for the promotion drift gate; forget the model's
        windows that ended before ``keep_after``."""
        with self._tx() as db:
            db.execute("INSERT INTO served (model, window_end, rows) VALUES (?,?,?)",
                       (model, window_end, json.dumps(rows, default=str)))
            db.execute("DELETE FROM served WHERE model=? AND window_end < ?", (model, keep_after))

    def served(self, model: str, since: float) -> list[tuple[float, list[dict[str, Any]]]]:
        """``(window_end, rows)`` of the model's windows that ended at or after ``since``."""
        return [(float(end), json.loads(rows)) for end, rows in self._rows(
            "SELECT window_end, rows FROM served WHERE model=? AND window_end >= ? ORDER BY seq",
            (model, since))]

    def update_report(self, model: str, version: str, window_end: float,
                      report: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE reports SET body=? WHERE model=? AND version=? AND window_end=?",
                       (json.dumps(report), model, version, window_end))

    def latest_reports(self) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for m, v, body in self._rows("SELECT model, version, body FROM reports ORDER BY seq"):
            out[(m, v)] = json.loads(body)
        return out

    def report_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM reports")[0][0])

    def window_history(self, model: str) -> list[tuple[str, float, float, float, str]]:
        """``(version, window_start, window_end, share_drifted, severity)`` oldest first."""
        return [(v, float(s), float(e), float(sh), sev) for v, s, e, sh, sev in self._rows(
            "SELECT version, window_start, window_end, share, severity FROM reports "
            "WHERE model=? ORDER BY window_end", (model,))]

    def first_scores(self, model: str, version: str) -> list[float]:
        """Scores of the version's first closed window (the prediction-drift baseline)."""
        first = self._rows("SELECT MIN(window_end) FROM predictions WHERE model=? AND version=?",
                           (model, version))[0][0]
        if first is None:
            return []
        return [float(s) for (s,) in self._rows(
            "SELECT score FROM predictions WHERE model=? AND version=? AND window_end=?",
            (model, version, first))]

    # ---- outcomes (labels that arrive later)

    def add_outcomes(self, model: str, outcomes: list[tuple[str, int, float, str]], at: float) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?)",
                           [(i, model, lab, val, src, at) for i, lab, val, src in outcomes])

    def joined(self, model: str) -> list[tuple[str, float, float, int, float]]:
        """``(version, window_end, score, label, value_usd)`` for predictions with an outcome."""
        return [(v, float(e), float(s), int(lab), float(val)) for v, e, s, lab, val in self._rows(
            "SELECT p.version, p.window_end, p.score, o.label, o.value_usd FROM predictions p "
            "JOIN outcomes o ON o.id = p.id WHERE p.model=?", (model,))]

    # ---- retrain policy

    def retrain_state(self, model: str) -> tuple[float, str, str, bool] | None:
        rows = self._rows("SELECT submitted_at, job_id, version, episode_open FROM retrain "
                          "WHERE model=?", (model,))
        if not rows:
            return None
        at, job, version, episode = rows[0]
        return float(at), str(job), str(version), bool(episode)

    def set_retrain_state(self, model: str, submitted_at: float, job_id: str, version: str,
                          episode_open: bool) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO retrain VALUES (?,?,?,?,?)",
                       (model, submitted_at, job_id, version, int(episode_open)))

    def set_retrain_target(self, model: str, body: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO retrain_targets VALUES (?,?)",
                       (model, json.dumps(body)))

    def retrain_target(self, model: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT body FROM retrain_targets WHERE model=?", (model,))
        return json.loads(rows[0][0]) if rows else None
