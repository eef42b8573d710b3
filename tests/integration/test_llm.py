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


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    import httpx
    import yaml
    from ray import serve

    from mlplat.config import load_config
    from mlplat.llm import TinyModelSpec, build_tiny_llm, deploy_llm, parse_llm_app

    cfg = load_config(REPO / "platform.yaml")
    root = tmp_path_factory.mktemp("llm-models")
    build_tiny_llm(TinyModelSpec.model_validate(SPEC), root / "tiny-chat" / "1", seed=0)
    suffix = uuid.uuid4().hex[:6]  # other people's apps share this cluster
    raw = yaml.safe_load((REPO / "apps/llm/app.yaml").read_text())
    raw.update(
        name=f"llm-test-{suffix}",
        model={"name": "tiny-chat", "version": "1",
               "source": {"type": "local", "path": f"{root}/{{name}}/{{version}}"}},
        serving={**raw["serving"], "route_prefix": f"/llm-test-{suffix}",
                 "num_cpus_per_replica": 0.25},
        transformers={"max_tokens_limit": 32, "default_max_tokens": 8},
        builder=SPEC,
    )
    app = parse_llm_app(raw, cfg)
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
