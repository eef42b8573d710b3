"""The LLM app for real on the shared cluster: the transformers engine on a tiny local Llama,
served by Ray Serve on the serving pool, answered over the OpenAI HTTP API (plain and SSE)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
        "num_heads": 4, "num_kv_heads": 2, "context_length": 96, "train_steps": 0,
        "corpus_sentences": 200}


def _test_app_raw(prefix: str, root: Path, default_max_tokens: int,
                  **serving: Any) -> dict[str, Any]:
    """apps/llm/app.yaml under a unique name/route (other people's apps share this cluster),
    its models under ``root``."""
    import yaml

    suffix = uuid.uuid4().hex[:6]
    raw = yaml.safe_load((REPO / "apps/llm/app.yaml").read_text())
    raw.update(
        name=f"{prefix}-{suffix}",
        model={"name": "tiny-chat", "version": "1",
               "source": {"type": "local", "path": f"{root}/{{name}}/{{version}}"}},
        serving={**raw["serving"], "route_prefix": f"/{prefix}-{suffix}",
                 "num_cpus_per_replica": 0.25, **serving},
        transformers={"max_tokens_limit": 32, "default_max_tokens": default_max_tokens},
        builder=SPEC,
    )
    return raw  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    import httpx
    from ray import serve

    from mlplat.config import load_config
    from mlplat.llm import TinyModelSpec, build_tiny_llm, deploy_llm, parse_llm_app

    cfg = load_config(REPO / "platform.yaml")
    root = tmp_path_factory.mktemp("llm-models")
    build_tiny_llm(TinyModelSpec.model_validate(SPEC), root / "tiny-chat" / "1", seed=0)
    app = parse_llm_app(_test_app_raw("llm-test", root, default_max_tokens=8), cfg)
    client = httpx.Client(timeout=60.0)
    try:  # delete the app even when the deploy itself times out
        t0 = time.monotonic()
        url = deploy_llm(cfg, app, actor="ci", reason="integration test", timeout_s=240)
        deploy_s = time.monotonic() - t0
        yield {"cfg": cfg, "app": app, "url": url, "client": client, "deploy_s": deploy_s}
    finally:
        client.close()
        serve.delete(app.name)


CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "the router serves"}],
        "max_tokens": 10, "temperature": 0}


def _sse(client, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST with stream=true; the parsed server-sent events (``{"done": True}`` for [DONE])."""
    events: list[dict[str, Any]] = []
    with client.stream("POST", url, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append({"done": True} if line == "data: [DONE]" else json.loads(line[6:]))
    return events


def test_chat_and_completion_answer_over_http(llm, record_property) -> None:
    client, url = llm["client"], llm["url"]
    record_property("deploy_s", round(llm["deploy_s"], 1))
    r = client.post(f"{url}/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-chat"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 10 and usage["prompt_tokens"] > 0
    again = client.post(f"{url}/chat/completions", json=CHAT).json()
    assert again["choices"][0]["message"]["content"] == body["choices"][0]["message"]["content"]

    r = client.post(f"{url}/completions", json={"model": "tiny-chat", "prompt": "the pool",
                                                "temperature": 0})
    assert r.status_code == 200, r.text
    comp = r.json()
    assert comp["object"] == "text_completion"
    assert comp["usage"]["completion_tokens"] <= llm["app"].transformers.default_max_tokens
    models = client.get(f"{url}/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny-chat"]


def test_streaming_sends_tokens_as_they_are_generated(llm) -> None:
    client, url = llm["client"], llm["url"]
    whole = client.post(f"{url}/chat/completions", json=CHAT).json()
    events = _sse(client, f"{url}/chat/completions",
                  {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert events[-1] == {"done": True}
    chunks = [e for e in events[:-1] if e.get("choices")]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert events[-2]["usage"] == whole["usage"]
    # Several content events, not one buffered blob at the end.
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= 2

    events = _sse(client, f"{url}/completions",
                  {"model": "tiny-chat", "prompt": "the pool", "stream": True, "max_tokens": 5,
                   "temperature": 0})
    assert events[-1] == {"done": True}
    assert events[-2]["choices"][0]["finish_reason"] in {"stop", "length"}


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400,
         "messages.0.role"),
        ("chat/completions", {**CHAT, "logit_bias": {}}, 400, "logit_bias"),
        ("chat/completions", {**CHAT, "model": "gpt-4"}, 404, "model"),
        ("chat/completions", {**CHAT, "max_tokens": 33}, 400, "max_tokens"),
        ("chat/completions", {**CHAT, "stream": True, "temperature": -1}, 400, "temperature"),
        ("completions", {"model": "tiny-chat"}, 400, "prompt"),
        ("completions", {"model": "tiny-chat", "prompt": "the job " * 200, "stream": True}, 400,
         "prompt"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(llm, path, body, status, field) -> None:
    r = llm["client"].post(f"{llm['url']}/{path}", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == field


def test_not_json_is_400_and_stats_count_tokens_and_cost(llm) -> None:
    client, url = llm["client"], llm["url"]
    r = client.post(f"{url}/chat/completions", content=b"{nope",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "<body>"
    client.post(f"{url}/chat/completions", json=CHAT).raise_for_status()
    stats = client.get(url.removesuffix("/v1") + "/stats").json()
    assert stats["requests"] >= 1 and stats["completion_tokens"] >= 1
    assert stats["tokens_per_s"] > 0 and stats["mean_ttft_ms"] > 0
    from mlplat.llm import cost_per_1k_tokens

    assert stats["cost_usd_per_1k_tokens"] == pytest.approx(
        cost_per_1k_tokens(llm["cfg"], llm["app"], stats["tokens_per_s"]))


def test_token_metrics_reach_the_prometheus_endpoint(llm) -> None:
    """mlplat_llm_* histograms are scraped from the replica's node (what Prometheus reads)."""
    import httpx
    import ray

    client, url = llm["client"], llm["url"]
    client.post(f"{url}/chat/completions", json=CHAT).raise_for_status()
    ports = {n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]}
    wanted = f'app="{llm["app"].name}"'
    deadline = time.monotonic() + 60  # Ray's metrics agent exports every few seconds
    found: set[str] = set()
    while time.monotonic() < deadline and len(found) < 3:
        for port in ports:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if wanted in line and not line.startswith("#"):
                    for name in ("ttft_ms", "tokens_per_s", "queue_ms"):
                        if f"mlplat_llm_{name}" in line:
                            found.add(name)
        time.sleep(1)
    assert found == {"ttft_ms", "tokens_per_s", "queue_ms"}


# ---------------------------------------------------------------------------- two versions


@pytest.fixture(scope="module")
def llm2(ray_cluster, tmp_path_factory):
    """Versions 1 (seed 0) and 2 (seed 1) of the tiny model behind one router, 50/50, with
    its own SLO guard actor."""
    import httpx
    import ray
    from ray import serve

    from mlplat.config import load_config
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import TinyModelSpec, build_tiny_llm, deploy_llm, parse_llm_app

    cfg = load_config(REPO / "platform.yaml")
    root = tmp_path_factory.mktemp("llm2-models")
    spec = TinyModelSpec.model_validate(SPEC)
    for version, seed in (("1", 0), ("2", 1)):
        build_tiny_llm(spec, root / "tiny-chat" / version, seed=seed)
    app = parse_llm_app(_test_app_raw("llm2-test", root, default_max_tokens=4,
                                      max_ongoing_requests=16), cfg)
    guard = f"llm-guard-{app.name}"
    client = httpx.Client(timeout=60.0)
    try:
        url = deploy_llm(cfg, app, actor="ci", reason="two versions", timeout_s=240,
                         split=TrafficSplit(weights={"1": 50, "2": 50}), guard=guard)
        yield {"cfg": cfg, "app": app, "url": url, "client": client, "guard": guard,
               "root": root, "spec": spec}
    finally:
        client.close()
        serve.delete(app.name)
        try:
            ray.kill(ray.get_actor(guard, namespace="mlplat"))
        except ValueError:
            pass


SHORT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "the canary"}],
         "max_tokens": 4, "temperature": 0}


def _key_for(split: dict[str, float], version: str, prefix: str = "c") -> str:
    from mlplat.deployment import SplitPicker, TrafficSplit

    picker = SplitPicker(TrafficSplit(weights=split))
    return next(f"{prefix}{i}" for i in range(10_000)
                if picker.choose(f"conversation:{prefix}{i}") == version)


def test_two_versions_split_sticky_by_user_and_named(llm2, record_property) -> None:
    from mlplat.deployment import SplitPicker, TrafficSplit

    client, url = llm2["client"], llm2["url"]
    picker = SplitPicker(TrafficSplit(weights={"1": 50, "2": 50}))
    answered: dict[str, set[str]] = {}
    for i in range(10):
        user = f"user-{i}"
        for _ in range(2):
            r = client.post(f"{url}/chat/completions", json={**SHORT, "user": user})
            assert r.status_code == 200, r.text
            version = r.headers["x-mlplat-version"]
            assert r.json()["system_fingerprint"] == f"tiny-chat-v{version}"
            assert version == picker.choose(f"user:{user}")
            answered.setdefault(user, set()).add(version)
    assert all(len(v) == 1 for v in answered.values())  # sticky per user
    shares = [next(iter(v)) for v in answered.values()]
    record_property("users_on_v2", f"{shares.count('2')}/{len(shares)}")
    assert set(shares) == {"1", "2"}
    # A conversation id pins a conversation, also for streams through the router.
    conv = _key_for({"1": 50, "2": 50}, "2")
    with client.stream("POST", f"{url}/chat/completions", json={**SHORT, "stream": True},
                       headers={"X-Conversation-Id": conv}) as r:
        assert r.status_code == 200 and r.headers["x-mlplat-version"] == "2"
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 3


def test_shadow_compares_text_of_two_versions(llm2, record_property) -> None:
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import llm_shadow_report, set_llm_traffic
    from tests.services import poll

    cfg, app, client, url = llm2["cfg"], llm2["app"], llm2["client"], llm2["url"]
    set_llm_traffic(cfg, app.name, TrafficSplit(weights={"1": 100}, shadow="2"), actor="ci",
                    reason="shadow v2")
    for i in range(6):
        r = client.post(f"{url}/chat/completions", json={**SHORT, "user": f"s{i}"})
        assert r.status_code == 200 and r.headers["x-mlplat-version"] == "1"
    report = poll(lambda: llm_shadow_report(cfg, app.name),
                  lambda rep: (rep["comparisons"].get("1->2") or {}).get("comparisons", 0)
                  + rep["dropped"] >= 6, 60, "shadow comparisons of 6 requests")
    pair = report["comparisons"]["1->2"]
    record_property("shadow", json.dumps({k: pair[k] for k in (
        "comparisons", "exact_match_rate", "mean_token_delta", "mean_similarity")}))
    assert pair["comparisons"] >= 1 and report["failed"] == 0
    assert 0 <= pair["exact_match_rate"] <= 1 and 0 <= pair["mean_similarity"] <= 1
    assert report["shadow"]["2"]["requests"] == pair["comparisons"]
    assert report["shadow"]["2"]["ttft_p99_ms"] is not None
    assert report["live"]["1"]["requests"] >= 6

    # The same report through the CLI a user would type.
    from typer.testing import CliRunner

    from mlplat.cli import app as cli

    out = CliRunner().invoke(cli, ["deploy", "shadow-report", app.name, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["comparisons"]["1->2"]["comparisons"] >= pair["comparisons"]


def test_injected_ttft_breach_rolls_canary_back_with_no_failed_request(
        llm2, record_property) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlplat.audit import AuditLog
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import llm_router_stats, set_llm_traffic
    from tests.services import poll

    cfg, app, client, url = llm2["cfg"], llm2["app"], llm2["client"], llm2["url"]
    slo = cfg.slos.llm
    delay_s = 2 * slo.ttft_p99_ms / 1000  # every canary TTFT lands past the SLO
    split = {"1": 50.0, "2": 50.0}
    set_llm_traffic(cfg, app.name, TrafficSplit(weights=split), actor="ci", stable="1",
                    reason="canary with a stalled engine",
                    faults={"2": {"delay_s": delay_s, "live_only": True}})
    canary = [_key_for(split, "2", f"k{i}-") for i in range(slo.min_samples + 1)]
    primary = [_key_for(split, "1", f"p{i}-") for i in range(4)]
    t0 = time.monotonic()

    def ask(conv: str) -> tuple[int, str]:
        r = client.post(f"{url}/chat/completions", json=SHORT,
                        headers={"X-Conversation-Id": conv})
        return r.status_code, r.headers.get("x-mlplat-version", "")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, canary + primary))
    assert all(status == 200 for status, _ in results), results  # no failed request
    assert [v for _, v in results[len(canary):]] == ["1"] * len(primary)
    answered_s = time.monotonic() - t0
    stats = poll(lambda: llm_router_stats(cfg, app.name),
                 lambda s: s["shadow"]["split"]["weights"].get("2") == 0.0, 60,
                 "canary weight 0 after the TTFT breach")
    rolled_s = time.monotonic() - t0
    record_property("breach_to_weight0_s", round(rolled_s - answered_s, 2))
    assert stats["shadow"]["split"]["weights"]["1"] == 100.0
    # The guard appends its audit record once the split is in force: poll for it.
    rec = poll(lambda: AuditLog(cfg).events(target=app.name, action_prefix="llm.rollback"),
               bool, 30, "llm.rollback audit record")
    assert rec[-1].actor == llm2["guard"]
    record_property("rollback_in_force_s", rec[-1].details.get("in_force_s"))
    assert "ttft p99" in rec[-1].reason and rec[-1].outcome == "ok"
    # After the rollback every conversation is answered by v1, including the canary's.
    r = client.post(f"{url}/chat/completions", json=SHORT,
                    headers={"X-Conversation-Id": canary[0]})
    assert r.status_code == 200 and r.headers["x-mlplat-version"] == "1"


# ---------------------------------------------------------------------------- staged promotion


class _Chats:
    """Chat requests from many users in the background (a promotion stage needs evidence)."""

    def __init__(self, url: str, threads: int = 4) -> None:
        import threading

        self.url, self.versions, self.failed = url, {}, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _run(self, worker: int) -> None:
        import httpx

        with httpx.Client(timeout=60.0) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                r = client.post(f"{self.url}/chat/completions",
                                json={**SHORT, "user": f"w{worker}-u{i}"})
                if r.status_code == 200:
                    v = r.headers["x-mlplat-version"]
                    self.versions[v] = self.versions.get(v, 0) + 1
                else:
                    self.failed.append((r.status_code, r.text[:200]))

    def __enter__(self) -> _Chats:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def _promote_and_wait(llm2, version: str) -> dict[str, Any]:
    from mlplat.deployment import promote, promotion_status
    from mlplat.secrets import person_token
    from tests.services import poll

    cfg, app, guard = llm2["cfg"], llm2["app"], llm2["guard"]
    out = promote(cfg, app.name, version, token=person_token(cfg, "ci"),
                  reason=f"promote v{version}", controller=guard)
    assert out["status"] == "running", out["history"]
    return poll(lambda: promotion_status(cfg, app.name, controller=guard)["rollout"],
                lambda r: r["status"] != "running", 180, f"v{version}'s rollout to end")


def test_promotion_controller_takes_an_llm_version_to_production(llm2, record_property) -> None:
    """``mlplat deploy promote`` for an LLM app: gates, shadow (text gate), 5/25/50/100 %
    canaries judged on slos.llm, production — through the guard's promotion controller."""
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import build_tiny_llm, llm_router_stats, set_llm_traffic

    cfg, app = llm2["cfg"], llm2["app"]
    # v3 has v1's weights (a retrain that changed little): its answers are production's.
    build_tiny_llm(llm2["spec"], llm2["root"] / "tiny-chat" / "3", seed=0)
    set_llm_traffic(cfg, app.name, TrafficSplit(weights={"1": 100}), actor="ci", stable="1",
                    reason="production on v1 before the promotion", faults={})
    t0 = time.monotonic()
    with _Chats(llm2["url"]) as chats:
        rollout = _promote_and_wait(llm2, "3")
    record_property("rollout_s", round(time.monotonic() - t0, 1))
    record_property("answers", json.dumps(chats.versions))
    assert rollout["status"] == "done", rollout["history"]
    assert chats.failed == []
    stages = [h["stage"] for h in rollout["history"] if h["event"] == "stage"]
    assert stages == ["shadow", *[f"canary-{p}" for p in cfg.promotion.canary_steps_pct
                                  if p < 100], "production"]
    text_gate = next(h["gate"] for h in rollout["history"]
                     if h["event"] == "stage_passed" and h["stage"] == "shadow")
    assert text_gate["name"] == "shadow_similarity" and text_gate["passed"], text_gate
    weights = llm_router_stats(cfg, app.name)["shadow"]["split"]["weights"]
    assert weights["3"] == 100.0 and sum(weights.values()) == 100.0  # v1 kept loaded at 0
    assert chats.versions.get("3", 0) > 0


def test_an_llm_version_unlike_production_stops_at_the_text_gate(llm2, record_property) -> None:
    """v2 (other weights) answers unlike production v3: rolled back after its shadow stage,
    having never answered a user."""
    from mlplat.llm import llm_router_stats

    cfg, app = llm2["cfg"], llm2["app"]
    with _Chats(llm2["url"]) as chats:
        rollout = _promote_and_wait(llm2, "2")
    assert rollout["status"] == "rolled_back", rollout["history"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    record_property("why", back["why"])
    assert back["stage"] == "shadow" and "shadow_similarity" in back["why"]
    assert chats.failed == [] and set(chats.versions) == {"3"}
    assert llm_router_stats(cfg, app.name)["shadow"]["split"]["weights"] == {"3": 100.0}
    # No way around the gates for an LLM app either: the one controller refuses a hand-set
    # canary of the rolled-back version (409 naming why), and the split stays as it was.
    from mlplat.deployment import TrafficSplit, set_traffic
    from mlplat.errors import GateBlockedError
    from mlplat.secrets import person_token

    with pytest.raises(GateBlockedError, match="rollback: v2 was rolled back"):
        set_traffic(cfg, app.name, TrafficSplit(weights={"3": 90, "2": 10}),
                    token=person_token(cfg, "alice"), reason="canary by hand",
                    controller=llm2["guard"])
    assert llm_router_stats(cfg, app.name)["shadow"]["split"]["weights"] == {"3": 100.0}


def test_llm_canary_errors_roll_back_through_the_controller(llm2, record_property) -> None:
    """v4 is like production in shadow, then fails every live answer in canary-5: the
    controller rolls it back on the error SLO, and the stable version answered every user."""
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import build_tiny_llm, llm_router_stats, set_llm_traffic

    cfg, app = llm2["cfg"], llm2["app"]
    build_tiny_llm(llm2["spec"], llm2["root"] / "tiny-chat" / "4", seed=0)
    set_llm_traffic(cfg, app.name, TrafficSplit(weights={"3": 100}), actor="ci", stable="3",
                    reason="a canary that fails live", faults={"4": {"error_rate": 1.0,
                                                                    "live_only": True}})
    with _Chats(llm2["url"]) as chats:
        rollout = _promote_and_wait(llm2, "4")
    assert rollout["status"] == "rolled_back", rollout["history"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    record_property("why", back["why"])
    assert back["stage"] == "canary-5" and "error rate" in back["why"], back
    assert chats.failed == [] and "4" not in chats.versions  # the stable version answered
    weights = llm_router_stats(cfg, app.name)["shadow"]["split"]["weights"]
    assert weights == {"3": 100.0}


def test_llm_canary_with_slow_first_tokens_rolls_back_through_the_controller(
        llm2, record_property) -> None:
    """v5 answers like production in shadow, then stalls every live answer past the TTFT SLO:
    the controller rolls it back in a canary stage on ``ttft p99``, every user answered."""
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import build_tiny_llm, llm_router_stats, set_llm_traffic

    cfg, app = llm2["cfg"], llm2["app"]
    delay_s = 2 * cfg.slos.llm.ttft_p99_ms / 1000
    build_tiny_llm(llm2["spec"], llm2["root"] / "tiny-chat" / "5", seed=0)
    set_llm_traffic(cfg, app.name, TrafficSplit(weights={"3": 100}), actor="ci", stable="3",
                    reason="a canary with stalled first tokens",
                    faults={"5": {"delay_s": delay_s, "live_only": True}})
    with _Chats(llm2["url"]) as chats:
        rollout = _promote_and_wait(llm2, "5")
    assert rollout["status"] == "rolled_back", rollout["history"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    record_property("why", back["why"])
    record_property("answers", json.dumps(chats.versions))
    assert back["stage"].startswith("canary") and "ttft p99" in back["why"], back
    assert chats.failed == []  # slow, not failed: every user was answered
    weights = llm_router_stats(cfg, app.name)["shadow"]["split"]["weights"]
    assert weights == {"3": 100.0}
