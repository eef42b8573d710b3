"""The router's own per-request cost, without Serve: ``RouterCore.respond`` (validate, pick a
version, look up, score, count, build the response) against the baseline's parse + look up +
score, on the same model and lookup table, in one process.

It separates the router's logic from what Serve and the shared CPUs add end to end
(``bench_router.py``). Example: `.venv/bin/python bench/bench_router_core.py`.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the bench reuses the integration tests' model writer
    sys.path.insert(0, str(REPO))


def main(n: int = 3000, rounds: int = 5) -> None:
    from bench.bench_router import _body
    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.deployment import InMemoryFeatureLookup, LocalModelLoader
    from mlplat.deployment._router import RouterCore
    from tests.integration.test_serving import _write_versions

    cfg = load_config(REPO / "platform.yaml")
    fraud = load_app("fraud", cfg)
    tmp = Path(tempfile.mkdtemp(prefix="bench-core-"))
    _write_versions(tmp, fraud.model_copy(update={"name": "bench"}))
    looked_up = [f for v in fraud.features.feature_views for f in v.features]
    lookup = InMemoryFeatureLookup(("account_id",), tuple(
        {"account_id": i, **{name: 1.0 for name in looked_up}} for i in range(100)))
    loader = LocalModelLoader(str(tmp))
    core = RouterCore("bench", fraud.features, fraud.serving.threshold, loader, lookup,
                      drift_sample_rate=fraud.serving.drift_sample_rate)
    core.apply({"model": "bench", "split": {"weights": {"1": 100}}})
    model = loader("bench", "1")
    bodies = [json.dumps(_body(i)).encode() for i in range(n)]

    def baseline(raw: bytes) -> str:
        body = json.loads(raw)
        row = {**lookup.get([body["entity"]])[0], **body["features"]}
        return json.dumps({"version": "1", "score": model.predict_proba([row])[0]})

    def routed(raw: bytes) -> str:
        status, body, _ = core.respond(raw)
        assert status == 200, body
        return json.dumps(body)

    per_req: dict[str, list[float]] = {"baseline": [], "router": []}
    for _ in range(rounds):  # alternate, so drift in the machine's load hits both alike
        for name, fn in (("baseline", baseline), ("router", routed)):
            t0 = time.perf_counter()
            for raw in bodies:
                fn(raw)
            per_req[name].append((time.perf_counter() - t0) / n * 1e6)
    base, router = (statistics.median(per_req[k]) for k in ("baseline", "router"))
    print(f"per request, median of {rounds} rounds of {n}: baseline {base:.0f} µs, "
          f"router core {router:.0f} µs ({router / base:.2f}×, +{router - base:.0f} µs)")


if __name__ == "__main__":
    main()
