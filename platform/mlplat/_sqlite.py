"""SQLite plumbing shared by the platform's small actor-backed stores (drift, cost)."""

from __future__ import annotations

import sqlite3

from mlplat.errors import InfraError


def open_store_db(path: str, schema: str, what: str) -> sqlite3.Connection:
    """One autocommit connection shared by threads (callers hold a lock), WAL on files, schema
    applied. Used by the platform's small actor-backed stores (drift, cost)."""
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        raise InfraError(f"Cannot open the {what} at {path}: {exc}") from exc
    return db
