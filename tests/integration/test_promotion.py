"""Registry-triggered promotion on the shared cluster, with a real `mlflow server`.

One router app (unique name and route) with two local TorchScript versions and its own
promotion-controller actor. The registry is a real `mlflow server` (SQLite backend) that
delivers HMAC-signed webhooks to the router; the controller keeps the aliases in sync there.
Traffic runs in a background thread throughout and must never see a failed request.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlplat.contracts.v1 import TrafficSplit
from tests.integration.test_serving import _body, _wait, _write_versions
from tests.services import Service, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _start_mlflow(work: Path, port: int) -> Service:
    """`mlflow server` (SQLite backend) allowed to deliver webhooks to loopback over http.

    Like tests.services.start_mlflow_server, but returns at once: the caller waits for the
    port later (startup takes tens of seconds on a busy 2-core box).
    """
    import os
    import subprocess
    import sys

    # The server caches "webhooks per event" for MLFLOW_WEBHOOK_CACHE_TTL (60 s by default):
    # a webhook created after an alias change is seen only after that; 1 s keeps tests quick.
    env = {**os.environ, "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
           "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true", "MLFLOW_WEBHOOK_CACHE_TTL": "1"}
    log = work / "mlflow.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--artifacts-destination", str(work / "artifacts"), "--workers", "1"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return Service("mlflow", port, f"http://127.0.0.1:{port}", proc=proc, workdir=work, log=log,
                   group=True)


class Traffic:
    """Steady predict traffic in a thread; records every status and answering version."""

    def __init__(self, url: str, rps: float = 25.0) -> None:
        import httpx

        self.client = httpx.Client(timeout=30.0)
        self.url, self.period = url, 1.0 / rps
        self.statuses: list[int] = []
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                r = self.client.post(f"{self.url}/predict",
                                     json=_body(i, f"t-{uuid.uuid4().hex[:8]}"))
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    self.versions.append(r.json()["version"])
                else:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")
            except Exception as exc:  # a transport failure is a failed request too
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


@pytest.fixture(scope="module")
def promo(ray_cluster, tmp_path_factory):
    import httpx
    import ray
    from mlflow import MlflowClient
    from ray import serve

    from mlplat.apps import load_app
    from mlplat.config import MlflowServerTracking, load_config
    from mlplat.deployment import (
        InMemoryFeatureLookup,
        LocalModelLoader,
        get_controller,
        undeploy,
    )
    from mlplat.deployment._api import deploy
    from mlplat.secrets import get_secret, person_token
    from tests.services import free_port

    suffix = uuid.uuid4().hex[:6]
    work = tmp_path_factory.mktemp("promo")
    port = free_port()
    server = _start_mlflow(work, port)  # starts in the background while the router deploys
    base = load_config(REPO / "platform.yaml")
    profile = base.active_profile().model_copy(update={
        "tracking": MlflowServerTracking(type="mlflow_server", uri=f"http://127.0.0.1:{port}")})
    # These drills inject errors, or kill the controller; they are not about latency. On a
    # loaded 2-core box the shadow's p99 reached 300 ms against platform.yaml's 250 ms and
    # rolled a rollout back before its canary (the p99 rule is unit-tested on a fake clock).
    cfg = base.model_copy(update={
        "profiles": {**base.profiles, base.active_profile_name(): profile},
        "promotion": base.promotion.model_copy(update={"rollback_max_p99_ms": 5000})})
    fraud = load_app("fraud", cfg)
    app = fraud.model_copy(update={
        "name": f"ptest-{suffix}",
        "serving": fraud.serving.model_copy(update={"route_prefix": f"/ptest-{suffix}"})})
    app = app.model_copy(update={"path": fraud.path})
    models = work / "models"
    _write_versions(models, app)
    looked_up = [f for v in app.features.feature_views for f in v.features]
    lookup = InMemoryFeatureLookup(("account_id",), tuple(
        {"account_id": i, **{n: 1.0 for n in looked_up}} for i in range(100)))
    controller = f"mlplat-promotion-controller-{suffix}"
    # Its own store: a test controller never sees the platform controller's state.
    handle = get_controller(cfg, controller, str(work / "promotions.db"))
    http = httpx.Client(timeout=30.0)
    try:
        url = deploy(cfg, app, TrafficSplit(weights={"1": 100}), actor="ci",
                     reason="promotion test", loader=LocalModelLoader(str(models)),
                     feature_lookup=lookup, controller=controller)
        wait_for_port(port, timeout_s=300, proc=server.proc)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model(app.name)
        for _ in range(2):
            client.create_model_version(app.name, source=f"s3://mlplat-test/{app.name}")
        client.create_webhook(name=f"promote-{app.name}", url=f"{url}/webhooks/mlflow",
                              events=["model_version_alias.created"],
                              secret=get_secret(cfg, "webhook_secret"))
        _wait(lambda: http.get(f"{url}/healthz").status_code == 200, 60, "proxy route")
        yield {"cfg": cfg, "app": app, "url": url, "http": http, "server": server,
               "client": client, "controller": controller, "handle": handle,
               "secret": get_secret(cfg, "webhook_secret"),
               "tokens": {p: person_token(cfg, p) for p in ("alice", "carol", "dana")}}
    finally:
        http.close()
        try:
            undeploy(cfg, app, actor="ci", reason="promotion test done")
        except Exception:
            serve.delete(app.name)
        ray.kill(handle, no_restart=True)
        server.stop()


def _status(p: dict[str, Any]) -> dict[str, Any]:
    from mlplat.deployment import promotion_status

    return promotion_status(p["cfg"], p["app"].name, controller=p["controller"])


def _events(rollout: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [h for h in rollout["history"] if h["event"] == name]


def test_admin_routes_act_as_the_tokens_owner_by_role_and_are_audited(promo) -> None:
    from mlplat.audit import AuditLog

    http, url, app = promo["http"], promo["url"], promo["app"]
    before = AuditLog(promo["cfg"]).head()[0]
    for path, body in [("/admin/rollback", {"reason": "x"}),
                       ("/admin/weights", {"weights": {"1": 100}, "reason": "x"}),
                       ("/admin/promote", {"version": "2", "reason": "x"}),
                       ("/admin/override", {"reason": "x"})]:
        r = http.post(f"{url}{path}", json=body)
        assert r.status_code == 401, (path, r.text)
        r = http.post(f"{url}{path}", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["field"] == "authorization"
    denied = [e for e in AuditLog(promo["cfg"]).events(before) if e.outcome == "denied"
              and e.target == app.name and e.action.startswith("deployment.")]
    assert len(denied) == 8

    def as_(person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {promo['tokens'][person]}"}

    # With a token: a refused action is a 4xx naming the cause, never a 500.
    with_tokens = AuditLog(promo["cfg"]).head()[0]
    r = http.post(f"{url}/admin/rollback", json={"reason": "nothing yet"}, headers=as_("alice"))
    assert r.status_code == 400 and "nothing to roll back" in r.json()["error"]
    r = http.post(f"{url}/admin/weights", json={"weights": {"1": 60}, "reason": "bad"},
                  headers=as_("alice"))
    assert r.status_code == 400 and r.json()["field"] == "weights"
    # No way around the gates: v2 never went through them (409 naming the gate) …
    canary = {"weights": {"1": 90, "2": 10}, "reason": "try v2 by hand"}
    r = http.post(f"{url}/admin/weights", json=canary, headers=as_("alice"))
    assert r.status_code == 409 and "gates: v2 never went through" in r.json()["error"], r.text
    # … a viewer changes nothing, a deployer cannot override, an incident commander can.
    r = http.post(f"{url}/admin/rollback", json={"reason": "x"}, headers=as_("dana"))
    assert r.status_code == 403 and "deployer" in r.json()["error"]
    r = http.post(f"{url}/admin/weights", json={**canary, "override": True}, headers=as_("alice"))
    assert r.status_code == 403 and "incident-commander" in r.json()["error"]
    r = http.post(f"{url}/admin/weights", json={**canary, "override": True,
                                                "reason": "INC-3 hotfix"}, headers=as_("carol"))
    assert r.status_code == 200, r.text
    r = http.post(f"{url}/admin/weights", json={"weights": {"1": 100}, "reason": "back"},
                  headers=as_("alice"))  # the last good version may always take traffic
    assert r.status_code == 200, r.text
    events = [(e.actor, e.outcome) for e in AuditLog(promo["cfg"]).events(with_tokens)
              if e.target == app.name and e.action == "deployment.set_weights"]
    # alice: the 409 (gate), the 403 (no override role); carol's override; alice's reset.
    assert events == [("alice", "denied"), ("alice", "denied"), ("carol", "ok"),
                      ("alice", "ok")], events


def test_bad_webhook_signature_is_401_and_audited(promo) -> None:
    from mlplat.audit import AuditLog
    from mlplat.deployment import sign_webhook

    http, url = promo["http"], promo["url"]
    before = AuditLog(promo["cfg"]).head()[0]
    payload = ('{"entity": "model_version_alias", "action": "created", "data": '
               f'{{"name": "{promo["app"].name}", "alias": "staging", "version": "2"}}}}')
    ts = str(int(time.time()))
    headers = {"X-MLflow-Delivery-Id": "d1", "X-MLflow-Timestamp": ts,
               "X-MLflow-Signature": sign_webhook("not-the-secret", "d1", ts, payload),
               "content-type": "application/json"}
    r = http.post(f"{url}/webhooks/mlflow", content=payload, headers=headers)
    assert r.status_code == 401
    r = http.post(f"{url}/webhooks/mlflow", content=payload,
                  headers={"content-type": "application/json"})
    assert r.status_code == 401
    denied = [e for e in AuditLog(promo["cfg"]).events(before)
              if e.action == "deployment.webhook" and e.outcome == "denied"]
    assert len(denied) == 2
    assert _status(promo)["rollout"] is None  # nothing started


def test_injected_canary_errors_roll_back_with_no_failed_request(promo) -> None:
    from mlplat.deployment import promote
    from mlplat.deployment._api import apply_traffic

    cfg, app = promo["cfg"], promo["app"]
    window = cfg.active_profile().promotion_timing.evaluation_window_s
    # Chaos knob: every live call of v2 fails; its shadow calls do not, so it reaches canary.
    apply_traffic(cfg, app, TrafficSplit(weights={"1": 100}), actor="ci", reason="chaos drill",
                  faults={"2": {"error_rate": 1.0, "live_only": True}})
    traffic = Traffic(promo["url"])
    try:
        # The test versions carry no training sample, so drift cannot be judged: the
        # incident commander accepts that (this drill is about the canary, not the gates).
        started = promote(cfg, app.name, "2", token=promo["tokens"]["carol"],
                          reason="chaos drill", override=True, controller=promo["controller"])
        assert started["status"] == "running", started["history"]
        rollout = _wait(lambda: (s := _status(promo)["rollout"])["status"] != "running" and s,
                        240, "rollback")
    finally:
        traffic.stop()
        apply_traffic(cfg, app, TrafficSplit(weights={"1": 100}), actor="ci",
                      reason="chaos drill over", faults={})
    assert rollout["status"] == "rolled_back", rollout["history"]
    canary = [h for h in _events(rollout, "stage") if h["stage"].startswith("canary")]
    back = _events(rollout, "rolled_back")[0]
    assert canary and "error rate" in back["why"], rollout["history"]
    assert back["alert"].startswith(("posted", "Alertmanager")), back["alert"]  # never a crash
    detected = back["detected_at"] - canary[0]["t"]
    elapsed = back["t"] - canary[0]["t"]
    block = _status(promo)["blocked"].get("2") or {}
    told = (block["replica_told_at"] - canary[0]["t"]) if block.get("replica_told_at") else None
    print(f"\ncanary errors: breach detected after {detected:.2f} s, a router replica told to "
          f"stop answering with v2 after {told if told is None else round(told, 2)} s, weight 0 "
          f"in force after {elapsed:.2f} s (window {window} s; applying the split took "
          f"{back['rollback_s']} s)")
    # The 3-window goal is asserted on the controller's logic in the unit tests (fake clock);
    # here detection also waits for canary traffic (5 % of a busy client), so assert the SLO.
    assert detected <= elapsed <= cfg.slos.deployment.rollback_after_breach_s
    assert back["target_features"]["passed"] is True
    assert traffic.failures == [], traffic.failures[:5]
    assert "2" not in traffic.versions[-5:]  # after rollback, only v1 answers
    assert promo["client"].get_registered_model(app.name).aliases.get("production") == "1"


def test_controller_killed_mid_rollout_completes(promo) -> None:
    import ray

    from mlplat.deployment import current_split, promote

    cfg, app = promo["cfg"], promo["app"]
    traffic = Traffic(promo["url"], rps=15)
    try:
        promote(cfg, app.name, "2", token=promo["tokens"]["carol"], reason="retrain",
                override=True, controller=promo["controller"])
        _wait(lambda: _status(promo)["rollout"]["stage"].startswith("canary"), 240, "canary")
        pid = ray.get(promo["handle"].ping.remote())["pid"]
        ray.kill(promo["handle"], no_restart=False)
        stage_at_kill = _status(promo)["rollout"]["stage"]
        rollout = _wait(lambda: (s := _status(promo)["rollout"])["status"] != "running" and s,
                        240, "rollout end")
        assert ray.get(promo["handle"].ping.remote())["pid"] != pid  # really restarted
        print(f"\ncontroller killed in {stage_at_kill}; rollout finished {rollout['status']}")
    finally:
        traffic.stop()
    assert rollout["status"] == "done", rollout["history"]
    stages = [h["stage"] for h in _events(rollout, "stage")]
    assert stages[0] == "shadow" and stages[-1] == "production"
    assert current_split(cfg, app).weights == {"1": 0.0, "2": 100.0}
    aliases = promo["client"].get_registered_model(app.name).aliases
    assert aliases.get("production") == "2" and "canary" not in aliases
    assert traffic.failures == [], traffic.failures[:5]


def test_staging_webhook_from_mlflow_server_promotes(promo) -> None:
    """mlflow server → signed webhook → every gate judged; one that cannot be judged blocks
    until an incident commander accepts it → shadow → canary → production."""
    from mlplat.deployment import current_split, override, promote

    cfg, app, client = promo["cfg"], promo["app"], promo["client"]
    # v1 goes back through promotion (v2 is production after the previous test).
    client.set_registered_model_alias(app.name, "staging", "1")
    _wait(lambda: (s := _status(promo)["rollout"]) and s["candidate"] == "1" and s, 120,
          "webhook-started rollout")
    rollout = _status(promo)["rollout"]
    assert rollout["source"] == "webhook"
    gates = {g["name"]: g for g in rollout["history"][0]["gates"]}
    assert {"metric", "schema", "model_card", "contract", "features", "drift"} <= set(gates)
    # The test versions have no training sample registered: drift cannot be judged, and the
    # webhook (which no person sent) cannot accept that — the rollout is rejected.
    assert rollout["status"] == "rejected" and not gates["drift"]["judged"], gates
    assert all(g["passed"] for name, g in gates.items() if name != "drift"), gates
    with pytest.raises(Exception, match="incident-commander"):
        promote(cfg, app.name, "1", token=promo["tokens"]["alice"], reason="accept drift",
                override=True, controller=promo["controller"])
    started = promote(cfg, app.name, "1", token=promo["tokens"]["carol"],
                      reason="INC-5: accept unjudged drift", override=True,
                      controller=promo["controller"])
    assert started["status"] == "running" and started["started_by"] == "carol"
    with pytest.raises(Exception, match="reason"):
        override(cfg, app.name, token=promo["tokens"]["carol"], reason=" ",
                 controller=promo["controller"])
    # Stages pass only once the candidate served promotion.min_stage_requests in them.
    traffic = Traffic(promo["url"])
    try:
        rollout = _wait(lambda: (s := _status(promo)["rollout"])["status"] != "running" and s,
                        180, "rollout end")
    finally:
        traffic.stop()
    assert rollout["status"] == "done", rollout["history"]
    assert traffic.failures == [], traffic.failures[:5]
    assert current_split(cfg, app).weights == {"2": 0.0, "1": 100.0}
    assert client.get_registered_model(app.name).aliases.get("production") == "1"


def test_openapi_fuzz_finds_no_5xx(promo) -> None:
    """schemathesis against the live endpoint's published OpenAPI spec: never a 5xx.

    Admin calls carry no token here (so they are 401s and change nothing); ≤ 30 s in all.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    url = promo["url"]
    spec = promo["http"].get(f"{url}/openapi.json").json()
    assert {"/predict", "/admin/weights", "/admin/promote", "/admin/override",
            "/admin/rollback", "/webhooks/mlflow"} <= set(spec["paths"])
    schema = schemathesis.openapi.from_dict(spec)
    deadline = time.monotonic() + 30
    server_errors: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            nonlocal calls
            if time.monotonic() > deadline:
                return
            response = case.call(base_url=url, timeout=10)
            calls += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.path} → {response.status_code}: "
                                     f"{response.text[:200]}")

        check()
    assert calls >= 20
    assert server_errors == [], server_errors[:5]
