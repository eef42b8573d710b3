"""Audit log: append cost per entry and time to verify 1M entries, against raw baselines.

Targets (issue 5): append ≤ 50 µs/entry amortized; verify 1M entries ≤ 5 s.
Baselines measured in the same run on the same file system:
- append: a raw ``executemany`` INSERT of the same (body, hash) rows into a bare SQLite table
  with the same WAL / synchronous=FULL settings and the same batch size;
- verify: a raw single-process ``SELECT body, hash`` scan plus ``hashlib.sha256`` of every body.

Example: `.venv/bin/python bench/bench_audit.py` (MLPLAT_BENCH_AUDIT_N=200000 for a quick run).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _entries(n: int, offset: int = 0) -> list[dict[str, object]]:
    return [{"actor": f"svc-{i % 17}", "action": "deployment.set_traffic",
             "target": f"model-{i % 100}", "reason": "canary step",
             "details": {"from": {"1": 95, "2": 5}, "to": {"1": 75, "2": 25}, "i": i + offset}}
            for i in range(n)]


def main() -> None:
    from mlplat.audit import AuditLog, SqliteAuditStore
    from mlplat.config import load_config

    n_verify = int(os.environ.get("MLPLAT_BENCH_AUDIT_N", "1000000"))
    batch = 1000
    cfg = load_config(REPO / "platform.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        path = Path(tmp) / "audit.db"
        log = AuditLog(cfg, store=SqliteAuditStore(path), signing_key=b"bench-key")

        # -- single durable append (one fsync each): for reference
        n_single = 200
        t0 = time.perf_counter()
        for i in range(n_single):
            log.append("svc", "promote", f"model-{i}", reason="bench", details={"i": i})
        single_us = (time.perf_counter() - t0) / n_single * 1e6

        # -- amortized append: append_many in batches of `batch`
        n_bulk = 100_000
        chunks = [_entries(batch, k) for k in range(0, n_bulk, batch)]
        t0 = time.perf_counter()
        for chunk in chunks:
            log.append_many(chunk)
        bulk_us = (time.perf_counter() - t0) / n_bulk * 1e6

        # -- baseline: raw executemany of the same rows, same batch size and pragmas
        rows = [(b, h) for b, h in SqliteAuditStore(path).scan(0, 1 << 62)][-n_bulk:]
        raw = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, hash TEXT)")
        t0 = time.perf_counter()
        for k in range(0, n_bulk, batch):
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany("INSERT INTO t (body, hash) VALUES (?, ?)", rows[k:k + batch])
            raw.execute("COMMIT")
        raw_us = (time.perf_counter() - t0) / n_bulk * 1e6
        raw.close()
        del rows
        print(f"append (durable, 1 fsync each): {single_us:8.1f} µs/entry")
        print(f"append_many x{batch} amortized:  {bulk_us:8.1f} µs/entry  (target ≤ 50)  "
              f"raw sqlite insert {raw_us:.1f} µs/entry → {bulk_us / raw_us:.2f}× raw")

        # -- fill up to n_verify and verify
        have = n_single + n_bulk
        t0 = time.perf_counter()
        while have < n_verify:
            k = min(10_000, n_verify - have)
            log.append_many(_entries(k, have))
            have += k
        fill_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = log.verify()
        verify_s = time.perf_counter() - t0
        assert result.ok and result.records == n_verify, result
        t0 = time.perf_counter()
        single = log.verify(workers=1)
        verify1_s = time.perf_counter() - t0
        assert single.ok

        store = SqliteAuditStore(path)
        t0 = time.perf_counter()
        count = sum(1 for _ in store.scan(0, 1 << 62))
        scan_s = time.perf_counter() - t0
        sha = hashlib.sha256
        t0 = time.perf_counter()
        for body, _digest in store.scan(0, 1 << 62):
            sha(body.encode()).hexdigest()
        scan_sha_s = time.perf_counter() - t0
        assert count == n_verify
        print(f"filled to {n_verify:,} records in {fill_s:.1f} s")
        print(f"verify {n_verify:,}: {verify_s:6.2f} s with {os.cpu_count()} CPUs "
              f"(target ≤ 5 s), {verify1_s:.2f} s in one process")
        print(f"  baseline raw scan {scan_s:.2f} s, raw scan + sha256 {scan_sha_s:.2f} s → "
              f"verify is {verify_s / scan_sha_s:.2f}× (parallel) / "
              f"{verify1_s / scan_sha_s:.2f}× (one process) of scan + sha256")


if __name__ == "__main__":
    main()
