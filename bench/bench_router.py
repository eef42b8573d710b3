"""Router overhead, placements, shadow isolation and zero-failure swaps, against baselines
measured in the same run on the same cluster with the same model.

Targets (issue 6): routed app vs the model as its own ingress — p50 ≤ 1.05×, p99 ≤ 1.15×,
throughput ≥ 0.9× at saturation; both placements measured; shadow on (a shadow that sleeps
1 s) vs off — primary p99 ≤ 1.05×; steady load (10 clients × 10 rps) with a version swap and
a killed router replica — 0 failed requests, p99 during the event ≤ 2× steady state (run
straight to Serve's proxy and through the ingress, which replays what a dying replica dropped;
the ingress's own cost is one more paired variant).

Each variant is measured *alternately* with the baseline (serial requests interleaved one by
one, saturation windows ordered A B B A), so both see the same moments of a noisy machine.

Runs on a running cluster (`mlplat cluster up`; or MLPLAT_BENCH_RAY_ADDRESS). Scale with
MLPLAT_BENCH_SERIAL (requests per serial measurement, default 400), MLPLAT_BENCH_SAT_S
(seconds of saturation, default 10), MLPLAT_BENCH_LOAD_S (steady-load seconds, default 60).
Example: `.venv/bin/python bench/bench_router.py`.
"""

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the bench reuses the integration tests' model writer
    sys.path.insert(0, str(REPO))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ratio_ci(base: list[float], var: list[float], q: float, rounds: int = 1000,
              seed: int = 0) -> tuple[float, float]:
    """90 % interval of ``quantile_q(var) / quantile_q(base)`` by a paired bootstrap: request
    ``i`` of each side was measured back to back, so the pairs are resampled together and the
    machine's drift stays paired. On a noisy 2-core box this says whether a ratio is a finding
    or noise."""
    import random

    rng = random.Random(seed)
    n = len(base)
    ratios = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(_pct([var[i] for i in idx], q) / _pct([base[i] for i in idx], q))
    ratios.sort()
    return ratios[int(0.05 * rounds)], ratios[int(0.95 * rounds) - 1]


def _verdict(ci: tuple[float, float], goal: float, *, at_most: bool = True) -> str:
    """``met`` when the whole interval meets the goal, ``not met`` when none of it does."""
    lo, hi = ci
    if (hi <= goal) if at_most else (lo >= goal):
        return "met"
    if (lo > goal) if at_most else (hi < goal):
        return "not met"
    return "inconclusive"


def _body(i: int) -> dict[str, Any]:
    return {"entity": {"account_id": i % 100}, "request_id": f"b-{i}-{uuid.uuid4().hex[:6]}",
            "features": {"amount": float(50 + i % 200), "merchant_category": "travel"}}


def _serial_pair(base_url: str, url: str, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """Serial requests alternating between the baseline and ``url``: both see the same
    moments of a noisy machine (no order bias). Returns (baseline, url) p50/p99, the url's
    with the paired-bootstrap 90 % intervals of its ratios (``p50_ci``, ``p99_ci``)."""
    import httpx

    lat: dict[str, list[float]] = {base_url: [], url: []}
    with httpx.Client(timeout=30) as c:
        for i in range(n + 20):
            for target in (base_url, url) if i % 2 else (url, base_url):
                t0 = time.perf_counter()
                r = c.post(f"{target}/predict", json=_body(i))
                if i >= 20:
                    lat[target].append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
    base, var = lat[base_url], lat[url]
    out = tuple({"p50_ms": statistics.median(v), "p99_ms": _pct(v, 0.99)} for v in (base, var))
    out[1]["p50_ci"] = _ratio_ci(base, var, 0.5)  # type: ignore[assignment]
    out[1]["p99_ci"] = _ratio_ci(base, var, 0.99)  # type: ignore[assignment]
    return out  # type: ignore[return-value]


def _saturate_pair(base_url: str, url: str, seconds: float) -> tuple[float, float]:
    """Saturation throughput of the baseline and ``url`` in windows ordered A B B A
    (``seconds`` each in all), so drift in the machine's load hits both alike.
    Returns (baseline rps, url rps)."""
    rps: dict[str, list[float]] = {base_url: [], url: []}
    for target in (base_url, url, url, base_url):
        rps[target].append(_saturate(target, seconds / 2))
    return statistics.mean(rps[base_url]), statistics.mean(rps[url])


def _saturate(url: str, seconds: float, clients: int = 8) -> float:
    import httpx

    done = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                i += 1
                if c.post(f"{url}/predict", json=_body(i)).status_code == 200:
                    with lock:
                        done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / seconds


def _baseline_app(models: str, lookup: Any, pool: str) -> Any:
    """The model served as its own ingress: parse, look up, score, answer — no router.

    (This module has no ``from __future__ import annotations``: FastAPI must see the real
    ``Request`` class in the route signature.)
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from ray import serve

    http = FastAPI()

    from mlplat.cluster import pool_selector

    # On the serving pool, like the router: same node, same path from the proxy.
    @serve.deployment(name="model", ray_actor_options={"num_cpus": 0.5,
                                                       "label_selector": pool_selector(pool)},
                      logging_config={"enable_access_log": False})
    @serve.ingress(http)
    class ModelIngress:
        def __init__(self, root: str, lookup: Any) -> None:
            from mlplat.deployment import LocalModelLoader

            self.model = LocalModelLoader(root)("bench", "1")
            self.lookup = lookup

        @http.post("/predict")
        async def predict(self, request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            row = {**self.lookup.get([body["entity"]])[0], **body["features"]}
            score = self.model.predict_proba([row])[0]
            return JSONResponse({"version": "1", "score": score})

    return ModelIngress.bind(models, lookup)


def _steady_load(url: str, seconds: float, events: list[tuple[float, Any]],
                 clients: int = 10, rps: float = 10.0) -> dict[str, Any]:
    """``clients`` × ``rps`` for ``seconds``; runs each (at_s, fn) event; p99 per phase."""
    import httpx

    records: list[tuple[float, float, bool]] = []
    failures: list[str] = []
    lock = threading.Lock()
    t_start = time.monotonic()
    stop = t_start + seconds

    def worker(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = 0
            while (now := time.monotonic()) < stop:
                i += 1
                t0 = time.perf_counter()
                why = ""
                try:
                    r = c.post(f"{url}/predict", json=_body(k * 100_000 + i))
                    ok = r.status_code == 200
                    why = "" if ok else f"{r.status_code} {r.text[:120]}"
                except Exception as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"[:160]
                with lock:
                    records.append((now - t_start, (time.perf_counter() - t0) * 1000, ok))
                    if not ok:
                        failures.append(f"t={now - t_start:.1f}s {why}")
                time.sleep(max(0.0, 1.0 / rps - (time.monotonic() - now)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    marks = []
    for at_s, fn in events:
        time.sleep(max(0.0, t_start + at_s - time.monotonic()))
        marks.append(time.monotonic() - t_start)
        fn()
        marks.append(time.monotonic() - t_start)
    for t in threads:
        t.join()
    steady = [lat for t, lat, _ in records if t < (events[0][0] if events else seconds)]
    during = [lat for t, lat, _ in records
              if any(a - 1 <= t <= b + 5 for a, b in zip(marks[::2], marks[1::2], strict=True))]
    return {"requests": len(records), "failed": sum(1 for *_, ok in records if not ok),
            "failures": failures, "event_marks_s": [round(m, 1) for m in marks],
            "steady_p99_ms": _pct(steady, 0.99) if steady else None,
            "event_p99_ms": _pct(during, 0.99) if during else None}


def _wait_replicas(app_name: str, n: int, timeout_s: float = 120.0) -> None:
    """Until Serve has replaced a killed replica and the new one serves (RUNNING, not just an
    actor that is still loading its models): the next drill needs both."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        router = app.deployments.get("router") if app else None
        if router is not None and router.replica_states.get("RUNNING", 0) >= n \
                and app.status == "RUNNING":
            return
        time.sleep(1.0)
    raise RuntimeError(f"{app_name} did not get back to {n} running replicas in {timeout_s:.0f} s")


def main() -> None:
    import ray
    from ray import serve

    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.contracts.v1 import TrafficSplit
    from mlplat.deployment import (
        InMemoryFeatureLookup,
        LocalModelLoader,
        endpoint_url,
        ingress_up,
        undeploy,
    )
    from mlplat.deployment._api import apply_traffic, deploy
    from tests.integration.test_serving import _write_versions

    serial_n = int(os.environ.get("MLPLAT_BENCH_SERIAL", "400"))
    sat_s = float(os.environ.get("MLPLAT_BENCH_SAT_S", "10"))
    load_s = float(os.environ.get("MLPLAT_BENCH_LOAD_S", "60"))
    if not ray.is_initialized():
        ray.init(address=os.environ.get("MLPLAT_BENCH_RAY_ADDRESS", "auto"), namespace="mlplat",
                 logging_level="ERROR", log_to_driver=False)
    cfg = load_config(REPO / "platform.yaml")
    fraud = load_app("fraud", cfg)
    suffix = uuid.uuid4().hex[:5]
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-"))
    looked_up = [f for v in fraud.features.feature_views for f in v.features]
    lookup = InMemoryFeatureLookup(("account_id",), tuple(
        {"account_id": i, **{n: 1.0 for n in looked_up}} for i in range(100)))

    def variant(name: str, placement: str, replicas: int = 1) -> Any:
        app = fraud.model_copy(update={"name": f"bench-{name}-{suffix}", "serving":
                                       fraud.serving.model_copy(update={
                                           "route_prefix": f"/bench-{name}-{suffix}",
                                           "placement": placement, "num_replicas": replicas})})
        _write_versions(tmp, app)
        return app

    # Baseline: the model as its own ingress (same model file, same lookup table).
    base_app = variant("base", "in_process")
    (tmp / "bench").symlink_to(tmp / base_app.name)
    serve._run(_baseline_app(str(tmp), lookup, base_app.serving.pool), name=base_app.name,
               route_prefix=base_app.serving.route_prefix)
    base_url = endpoint_url(cfg, base_app)
    ingress = ingress_up(cfg)  # as `mlplat cluster up` starts it (reloaded if it runs)
    results: dict[str, dict[str, float]] = {}
    bases: dict[str, dict[str, float]] = {}
    apps = []

    def paired(name: str, url: str) -> None:
        # Each variant against the baseline in the same moments: alternating serial requests
        # and A B B A saturation windows (the machine's load drifts; order bias is gone).
        base_lat, lat = _serial_pair(base_url, url, serial_n)
        bases[name], results[name] = dict(base_lat), dict(lat)
        bases[name]["rps"], results[name]["rps"] = _saturate_pair(base_url, url, sat_s)

    try:
        for placement in ("in_process", "deployments"):
            app = variant(placement.replace("_", ""), placement)
            apps.append(app)
            url = deploy(cfg, app, TrafficSplit(weights={"1": 100}), actor="bench",
                         reason="bench", loader=LocalModelLoader(str(tmp)),
                         feature_lookup=lookup)
            paired(f"router {placement}", url)
            if placement == "in_process":
                # What the ingress (NGINX in front of Serve) adds, against the same baseline.
                paired("router in_process via ingress",
                       f"{ingress.url}{app.serving.route_prefix}")
                # Shadow on vs off, measured against each other: a second router whose split
                # shadows v2 (its own deployment, sleeping 1 s per call), alternating request by
                # request with the first one (no shadow).
                on_app = variant("shadowon", "in_process")
                apps.append(on_app)
                on_url = deploy(cfg, on_app, TrafficSplit(weights={"1": 100}), actor="bench",
                                reason="bench", loader=LocalModelLoader(str(tmp)),
                                feature_lookup=lookup)
                apply_traffic(cfg, on_app, TrafficSplit(weights={"1": 100, "2": 0}, shadow="2"),
                            actor="bench", reason="shadow bench",
                            faults={"2": {"delay_s": 1.0}})
                shadow = _serial_pair(url, on_url, 2 * serial_n)
                undeploy(cfg, on_app, actor="bench", reason="next variant")
                apps.remove(on_app)
            # One variant at a time on the serving pool (2 logical CPUs locally): the baseline
            # sits there too now.
            undeploy(cfg, app, actor="bench", reason="next variant")
            apps.remove(app)
        print("each variant against the model as its own ingress, measured alternately "
              "(baseline numbers of that pairing in brackets)")
        print(f"{'variant':<34}{'p50 ms':>16}{'p99 ms':>16}{'rps':>16}{'p50×':>7}{'p99×':>7}"
              f"{'rps×':>7}")
        for name, r in results.items():
            b = bases[name]
            rps, b_rps = r.get("rps", float("nan")), b.get("rps", float("nan"))
            print(f"{name:<34}{r['p50_ms']:>7.2f} [{b['p50_ms']:>6.2f}]"
                  f"{r['p99_ms']:>7.2f} [{b['p99_ms']:>6.2f}]{rps:>7.1f} [{b_rps:>6.1f}]"
                  f"{r['p50_ms'] / b['p50_ms']:>7.2f}{r['p99_ms'] / b['p99_ms']:>7.2f}"
                  f"{rps / b_rps:>7.2f}")
        print("paired-bootstrap 90 % intervals of the latency ratios, and the goals they settle:")
        for name, r in results.items():
            if not name.startswith("router") or "shadow" in name:
                continue
            p50_ci, p99_ci = r["p50_ci"], r["p99_ci"]
            print(f"  {name:<32} p50× [{p50_ci[0]:.2f}–{p50_ci[1]:.2f}] goal ≤ 1.05: "
                  f"{_verdict(p50_ci, 1.05)}; p99× [{p99_ci[0]:.2f}–{p99_ci[1]:.2f}] goal ≤ 1.15: "
                  f"{_verdict(p99_ci, 1.15)}")
        off, on = shadow
        p99_ci = on["p99_ci"]
        print(f"shadow on vs off, paired ({2 * serial_n} requests each): primary p50 "
              f"{on['p50_ms']:.2f} / {off['p50_ms']:.2f} ms, p99 {on['p99_ms']:.2f} / "
              f"{off['p99_ms']:.2f} ms = {on['p99_ms'] / off['p99_ms']:.2f}× "
              f"[{p99_ci[0]:.2f}–{p99_ci[1]:.2f}] goal ≤ 1.05: {_verdict(p99_ci, 1.05)}")

        # Steady load with a version swap and a killed router replica (2 replicas). Free the
        # serving pool first: the variants above hold its CPUs, and 2 more replicas would wait
        # for them forever.
        for done in apps:
            undeploy(cfg, done, actor="bench", reason="free the serving pool for the load test")
        apps.clear()
        serve.delete(base_app.name)
        app = variant("load", "in_process", replicas=2)
        apps.append(app)
        url = deploy(cfg, app, TrafficSplit(weights={"1": 100}), actor="bench", reason="bench",
                     loader=LocalModelLoader(str(tmp)), feature_lookup=lookup)

        target = iter(["2", "1"])

        def swap() -> None:
            apply_traffic(cfg, app, TrafficSplit(weights={next(target): 100}), actor="bench",
                        reason="version swap under load")

        def kill_replica() -> None:
            from ray.util.state import list_actors

            replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
                        if (a.get("name") or "").startswith(f"SERVE_REPLICA::{app.name}#router")]
            if replicas:
                ray.kill(ray.get_actor(replicas[0]["name"], namespace="serve"), no_restart=True)

        # The same drill twice: straight to Serve's proxy (the baseline), then through the
        # ingress, which replays what a dying replica dropped. Serve replaces the killed replica
        # in between.
        for via, load_url in (("Serve proxy", url),
                              ("ingress", f"{ingress.url}{app.serving.route_prefix}")):
            replayed_before = len(ingress.replays())
            load = _steady_load(load_url, load_s,
                                [(load_s / 3, swap), (2 * load_s / 3, kill_replica)])
            ratio = (load["event_p99_ms"] or 0) / (load["steady_p99_ms"] or 1)
            print(f"steady load 10×10 rps for {load_s:.0f} s via the {via}, swap + killed "
                  f"replica: {load['requests']} requests, {load['failed']} failed "
                  f"(goal 0); p99 steady {load['steady_p99_ms']:.1f} ms, during events "
                  f"{load['event_p99_ms']:.1f} ms ({ratio:.2f}×, goal ≤ 2×); swap at "
                  f"{load['event_marks_s'][:2]} s, replica killed at "
                  f"{load['event_marks_s'][2:]} s")
            for failure in load["failures"][:10]:
                print(f"  failed: {failure}")
            if via == "ingress":
                for line in ingress.replays()[replayed_before:][:10]:
                    print(f"  replayed by the ingress: {line}")
            _wait_replicas(app.name, 2)
    finally:
        serve.delete(base_app.name)
        for app in apps:
            try:
                undeploy(cfg, app, actor="bench", reason="bench done")
            except Exception:
                serve.delete(app.name)


if __name__ == "__main__":
    main()
