"""Model catalog search over 1,000 synthetic models: target < 50 ms per search.

Baseline in the same run: a full-table scan — read every entry, parse it and filter in Python
(what a catalog without an index does). Also times the HTTP endpoint end to end (Starlette
TestClient, in-process).

Example: `.venv/bin/python bench/bench_catalog.py`.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_MODELS = 1000
REPEAT = 50
QUERIES = {
    "team:risk stage:production": lambda d: d["team"] == "risk" and "production" in d["stages"],
    "owner:owner3* drift:critical": lambda d: d["owner"].startswith("owner3")
    and d["drift_status"] == "critical",
    "feature:f7": lambda d: "f7" in d["input_schema"]["features"],
    "team:search fraud": lambda d: d["team"] == "search" and "fraud" in d["description"].split(),
}


def _entries():
    from mlplat.governance import CatalogEntry

    teams = ["risk", "recommendations", "search"]
    words = ["fraud", "ranking", "churn", "pricing", "spam"]
    return [CatalogEntry(
        model=f"model-{i:04d}", team=teams[i % 3], owner=f"owner{i % 7}@example.com",
        description=f"{words[i % 5]} model {i} of team {teams[i % 3]}",
        latest_version=str(i % 9 + 1),
        stage="production" if i % 4 == 0 else "staging",
        stages={"production" if i % 4 == 0 else "staging": str(i % 9 + 1)},
        input_schema={"entity_keys": ["id"], "features": [f"f{i % 11}", f"g{i % 13}", "amount"]},
        output_schema={"score": "float"}, slos={"p99_ms_max": 250},
        drift_status=["ok", "warning", "critical"][i % 3],
        links={"lineage": f"mlplat lineage show model-{i:04d}:1"},
    ) for i in range(N_MODELS)]


def _ms(fn, repeat: int = REPEAT) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    from starlette.testclient import TestClient

    from mlplat.config import load_config
    from mlplat.governance import Catalog, CatalogEntry, catalog_asgi_app

    cfg = load_config(REPO / "platform.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        cat = Catalog(Path(tmp) / "catalog.db")
        t0 = time.perf_counter()
        cat.upsert(_entries())
        print(f"indexed {N_MODELS} models in {(time.perf_counter() - t0) * 1000:.0f} ms")
        client = TestClient(catalog_asgi_app(cfg, catalog=cat))
        for query, pred in QUERIES.items():
            found = cat.search(query, limit=N_MODELS)

            def scan(pred=pred):  # the baseline: parse every entry, filter in Python
                rows = cat._conn.execute("SELECT doc FROM models").fetchall()
                docs = [json.loads(r[0]) for r in rows]
                return [CatalogEntry.model_validate(d) for d in docs if pred(d)]

            expected = scan()
            assert sorted(e.model for e in expected) == [e.model for e in found], query
            med, p99 = _ms(lambda q=query: cat.search(q, limit=N_MODELS))
            base_med, _ = _ms(scan, repeat=10)
            http_med, http_p99 = _ms(lambda q=query: client.get("/models", params={
                "q": q, "limit": N_MODELS}).raise_for_status())
            print(f"{query!r:32} {len(found):4} hits: search p50 {med:6.2f} ms p99 {p99:6.2f} ms "
                  f"(target < 50) | full scan {base_med:7.2f} ms → {base_med / med:5.1f}× faster "
                  f"| HTTP p50 {http_med:6.2f} ms p99 {http_p99:6.2f} ms")


if __name__ == "__main__":
    main()
