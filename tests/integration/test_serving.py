"""The router on the shared multi-pool cluster: HTTP split, shadow, bad input, live reconfigure.

Two real TorchScript versions with visibly different outputs are served in-process by the
router (LocalModelLoader) with an in-memory feature table; audit goes to a recorder (the audit
log itself is the governance plane's test).
"""

from __future__ import annotations

import re
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlplat.contracts.v1 import ModelCard, Preprocessor, TrafficSplit

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
N_SPLIT_REQUESTS = 300
WARMUP = 10


def _write_versions(root: Path, app) -> None:
    import torch

    from mlplat.deployment import save_local_model

    spec = app.features
    looked_up = [f for v in spec.feature_views for f in v.features]
    numeric = [*looked_up, "amount"]
    pre = Preprocessor.model_validate({
        "numeric": [{"name": n, "mean": 100.0 if n == "amount" else 0.0, "std": 50.0}
                    for n in numeric],
        "categorical": [{"name": "merchant_category", "vocabulary": ["grocery", "travel"]}],
    })
    for version, bias in (("1", -2.0), ("2", 2.0)):
        net = torch.nn.Linear(pre.width, 1)
        with torch.no_grad():
            net.weight.zero_()
            net.weight[0, numeric.index("amount")] = 0.5
            net.bias.fill_(bias)
        card = ModelCard(model=app.name, version=version, team=app.team, owner=app.owner,
                         description=app.description, intended_use=app.intended_use,
                         limitations=app.limitations, training_dataset_sha256="0" * 64,
                         metrics={"val_auc": 0.9}, feature_spec=spec,
                         created_at=datetime.now(UTC))
        save_local_model(root, app.name, version, torch.jit.script(net), pre, spec, card,
                         {"val_auc": 0.9})


def _wait(predicate, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    import httpx
    from ray import serve

    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.deployment import InMemoryFeatureLookup, LocalModelLoader
    from mlplat.deployment._api import deploy

    cfg = load_config(REPO / "platform.yaml")
    fraud = load_app("fraud", cfg)
    # A name and route of its own: the shared cluster also runs the demo's "fraud" app.
    suffix = uuid.uuid4().hex[:6]
    app = fraud.model_copy(update={
        "name": f"serving-{suffix}",
        "serving": fraud.serving.model_copy(update={"route_prefix": f"/serving-{suffix}"})})
    root = tmp_path_factory.mktemp("models")
    _write_versions(root, app)
    looked_up = [f for v in app.features.feature_views for f in v.features]
    lookup = InMemoryFeatureLookup(
        ("account_id",), tuple({"account_id": i, **{n: 1.0 for n in looked_up}}
                               for i in range(100)))
    audit: list[tuple[str, str, str]] = []

    def sink(actor, action, target, reason="", details=None, outcome="ok"):
        audit.append((action, target, outcome))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mlplat.deployment._api.audit_sink", lambda cfg: sink)
        t0 = time.monotonic()
        url = deploy(cfg, app, TrafficSplit(weights={"1": 75, "2": 25}), actor="ci",
                     reason="integration test", loader=LocalModelLoader(str(root)),
                     feature_lookup=lookup)
        deploy_s = time.monotonic() - t0
        client = httpx.Client(timeout=30.0)
        _wait(lambda: client.get(f"{url}/healthz").status_code == 200, 60, "proxy route")
        try:
            yield {"cfg": cfg, "app": app, "url": url, "client": client, "audit": audit,
                   "deploy_s": deploy_s, "root": root, "lookup": lookup}
        finally:
            client.close()
            serve.delete(app.name)


def _body(i: int, request_id: str | None = None) -> dict:
    b: dict[str, Any] = {"entity": {"account_id": i % 100},
                         "features": {"amount": float(50 + i % 200), "merchant_category": "travel"}}
    if request_id:
        b["request_id"] = request_id
    return b


def _load(route: str, clients: int, tag: str, results: list[tuple[float, int, dict]],
          stop: threading.Event, pause_s: float) -> list[threading.Thread]:
    """``clients`` threads posting to ``route`` until ``stop``; each answer is recorded as
    (monotonic time, status or -1 for a transport error, JSON body or the error)."""
    import httpx

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post(route, json=_body(k * 1000 + i, f"{tag}-{k}-{i}"))
                    body = r.json() if r.status_code == 200 else {"text": r.text[:120]}
                    results.append((time.monotonic(), r.status_code, body))
                except httpx.HTTPError as exc:
                    results.append((time.monotonic(), -1, {"error": repr(exc)}))
                time.sleep(pause_s)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    return threads


def test_split_over_http_follows_weights_and_names_versions(served, record_property) -> None:
    from mlplat.deployment import SplitPicker, router_stats

    client, url = served["client"], served["url"]
    picker = SplitPicker(TrafficSplit(weights={"1": 75, "2": 25}))
    versions: Counter[str] = Counter()
    latencies_ms = []
    for i in range(N_SPLIT_REQUESTS):
        rid = f"split-{i}"
        t0 = time.perf_counter()
        r = client.post(f"{url}/predict", json=_body(i, rid))
        latencies_ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model"] == served["app"].name and out["request_id"] == rid
        # Same stable hash on both sides: the router's choice is predictable per request id.
        assert out["version"] == picker.choose(rid)
        # The two versions differ visibly: v1 scores low, v2 high.
        assert (out["score"] < 0.5) == (out["version"] == "1")
        assert out["label"] == int(out["score"] >= served["app"].serving.threshold)
        versions[out["version"]] += 1
    share_v2 = versions["2"] / N_SPLIT_REQUESTS
    assert abs(share_v2 - 0.25) < 0.07, versions  # ≈3 binomial sd at n=300
    stats = router_stats(served["cfg"], served["app"])
    assert stats["requests"] == dict(versions)

    timed = sorted(latencies_ms[WARMUP:])
    p50 = statistics.median(timed)
    p99 = timed[min(len(timed) - 1, int(0.99 * len(timed)))]
    record_property("predict_http_p50_ms", round(p50, 2))
    record_property("predict_http_p99_ms", round(p99, 2))
    print(f"\nrouter HTTP predict (serial, n={len(timed)}): p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
          f"deploy took {served['deploy_s']:.1f} s; split {dict(versions)}")


def test_bad_bodies_are_4xx_naming_the_field(served) -> None:
    client, url = served["client"], served["url"]
    cases = [
        (b"{broken", "<body>"),
        (b'{"entity": {"account_id": 1}, "features": {"amount": "12", '
         b'"merchant_category": "travel"}}', "features.amount"),
        (b'{"entity": {}, "features": {"amount": 1, "merchant_category": "travel"}}',
         "entity.account_id"),
        (b'{"entity": {"account_id": 1}, "features": {"amount": 1}}',
         "features.merchant_category"),
    ]
    for raw, field in cases:
        r = client.post(f"{url}/predict", content=raw,
                        headers={"content-type": "application/json"})
        assert r.status_code == 400, (raw, r.status_code, r.text)
        assert r.json()["field"] == field and r.json()["error"]


def test_shadow_and_reconfigure_without_restart(served) -> None:
    from mlplat.deployment import current_split, router_stats
    from mlplat.deployment._api import apply_traffic

    cfg, app, client, url = served["cfg"], served["app"], served["client"], served["url"]
    before = router_stats(cfg, app)["replica"]

    shadowed = TrafficSplit(weights={"1": 100, "2": 0}, shadow="2")
    apply_traffic(cfg, app, shadowed, actor="ci", reason="shadow v2")
    assert current_split(cfg, app) == shadowed
    after = router_stats(cfg, app)["replica"]
    assert (after["actor_id"], after["pid"], after["replica_id"]) == (
        before["actor_id"], before["pid"], before["replica_id"]), "replica was restarted"

    n = 60
    for i in range(n):
        r = client.post(f"{url}/predict", json=_body(i, f"shadow-{i}"))
        assert r.status_code == 200 and r.json()["version"] == "1"  # callers see live only
    shadow = _wait(lambda: (s := router_stats(cfg, app)["shadow"])["comparisons"]
                   + s["dropped"] >= n and s["in_flight"] == 0 and s,
                   30, "shadow comparisons")
    assert shadow["version"] == "2" and shadow["comparisons"] >= 1
    assert shadow["comparisons"] + shadow["dropped"] == n
    assert shadow["failed"] == 0
    assert shadow["mean_abs_diff"] > 0.3  # v1 ≈ 0.1, v2 ≈ 0.9
    assert shadow["agreement_rate"] < 0.5

    # Dropping v1 from the split unloads it, still without a restart.
    apply_traffic(cfg, app, TrafficSplit(weights={"2": 100}), actor="ci", reason="all on v2")
    stats = router_stats(cfg, app)
    assert stats["loaded_versions"] == ["2"]
    assert stats["replica"]["pid"] == before["pid"]
    assert client.post(f"{url}/predict", json=_body(1)).json()["version"] == "2"

    # Drift samples leave the request path; with or without a monitor, none vanish.
    drift = stats["drift"]
    assert drift["sampled"] == drift["sent"] + drift["dropped"] + drift["queued"] > 0

    assert [(a, o) for a, _, o in served["audit"]] == [
        ("deployment.deploy", "ok"), ("deployment.set_traffic", "ok"),
        ("deployment.set_traffic", "ok")]


def test_version_swap_under_steady_load_fails_no_request(served) -> None:
    """Small-scale version of the bench's 10 clients × 10 rps: a swap costs no request."""

    from mlplat.deployment import current_split
    from mlplat.deployment._api import apply_traffic

    cfg, app, url = served["cfg"], served["app"], served["url"]
    start = current_split(cfg, app)
    target = "1" if start.weights.get("2", 0) == 100 else "2"
    results: list[tuple[float, int, dict]] = []
    stop = threading.Event()
    threads = _load(f"{url}/predict", 4, "load", results, stop, pause_s=0.1)
    time.sleep(2)
    apply_traffic(cfg, app, TrafficSplit(weights={target: 100}), actor="ci",
                reason="swap under load")
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    statuses = [status for _, status, _ in results]
    versions = [out["version"] for _, status, out in results if status == 200]
    assert statuses and all(s == 200 for s in statuses), Counter(statuses)
    assert versions[-1] == target and len(set(versions)) == 2


def test_a_killed_router_replica_fails_no_request_through_the_ingress(served, tmp_path) -> None:
    """Serve's proxy answers 500 for every request in flight at a replica that dies; the
    ingress (NGINX, as `mlplat cluster up` starts it) replays them to a live replica. Last in
    the module: it scales the app to 2 replicas."""
    import ray
    from ray.util.state import list_actors

    from mlplat.deployment import LocalModelLoader, current_split, ingress_down, ingress_up
    from mlplat.deployment._api import apply_traffic, deploy
    from tests.services import free_port

    cfg, app = served["cfg"], served["app"]
    two = app.model_copy(update={"serving": app.serving.model_copy(update={"num_replicas": 2})})
    split = current_split(cfg, app)
    deploy(cfg, two, split, actor="ci", reason="two replicas",
           loader=LocalModelLoader(str(served["root"])), feature_lookup=served["lookup"])
    # Every answer takes 0.3 s in the router, so the killed replica surely has requests in
    # flight (10 clients, about half on each replica): the drill cannot pass by luck.
    apply_traffic(cfg, app, split, actor="ci", reason="slow answers for the kill drill",
                  faults={v: {"delay_s": 0.3} for v in split.weights})

    def replicas() -> list[str]:
        return sorted(a["name"] for a in list_actors(filters=[("state", "=", "ALIVE")],
                                                     limit=10_000)
                      if (a.get("name") or "").startswith(f"SERVE_REPLICA::{app.name}#router"))

    _wait(lambda: len(replicas()) == 2, 120, "two router replicas")
    ingress = ingress_up(cfg, port=free_port(), folder=tmp_path / "ingress")
    route = f"{ingress.url}{app.serving.route_prefix}/predict"
    results: list[tuple[float, int, dict]] = []
    stop = threading.Event()
    threads = _load(route, 10, "kill", results, stop, pause_s=0.02)
    try:
        _wait(lambda: len(results) > 30, 60, "steady traffic through the ingress")
        victim = replicas()[0]
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        _wait(lambda: sum(t > killed_at + 3 for t, *_ in results) > 30, 60, "traffic after")
    finally:
        stop.set()
        for t in threads:
            t.join()
        ingress_down(cfg, folder=tmp_path / "ingress")
    failed = [r for r in results if r[1] != 200]
    around = sum(abs(t - killed_at) < 1 for t, *_ in results)
    print(f"\n{len(results)} requests through the ingress, {around} answered within 1 s of the kill, "
          f"{len(failed)} failed; replayed by the ingress: {ingress.replays()}")
    assert victim not in replicas()
    assert failed == [], failed[:5]
    # The requests the dead replica held were sent again: Serve's 500, then a live answer.
    replayed = ingress.replays()
    assert replayed and all(re.search(r'upstream_status="50[02](, 50[02])*, 200" status=200$', ln)
                            for ln in replayed), replayed
