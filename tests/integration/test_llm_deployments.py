"""``serving.placement: deployments`` for real: each LLM version in a Serve application of its
own (``<app>--v<N>``, its own CPUs), streamed from by the router through handles; versions
start before the router names them and go once no split names them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.integration.test_llm import REPO, SHORT, SPEC, _Chats, _key_for, _test_app_raw

pytestmark = pytest.mark.integration


def _apps() -> dict[str, str]:
    from ray import serve

    return {name: str(getattr(s.status, "value", s.status))
            for name, s in serve.status().applications.items()}


@pytest.fixture(scope="module")
def llm_dep(ray_cluster, tmp_path_factory):
    """Versions 1 (seed 0) and 2 (seed 1), 50/50, each in its own application."""
    import httpx

    from mlplat.config import load_config
    from mlplat.deployment import TrafficSplit
    from mlplat.llm import TinyModelSpec, build_tiny_llm, deploy_llm, parse_llm_app, undeploy_llm

    cfg = load_config(REPO / "platform.yaml")
    root = tmp_path_factory.mktemp("llm-dep-models")
    spec = TinyModelSpec.model_validate(SPEC)
    for version, seed in (("1", 0), ("2", 1)):
        build_tiny_llm(spec, root / "tiny-chat" / version, seed=seed)
    app = parse_llm_app(_test_app_raw("llm-dep", root, default_max_tokens=4,
                                      placement="deployments", version_num_cpus=0.25,
                                      max_ongoing_requests=16), cfg)
    client = httpx.Client(timeout=60.0)
    try:
        t0 = time.monotonic()
        url = deploy_llm(cfg, app, actor="ci", reason="versions as deployments", timeout_s=240,
                         split=TrafficSplit(weights={"1": 50, "2": 50}))
        yield {"cfg": cfg, "app": app, "url": url, "client": client, "root": root,
               "deploy_s": time.monotonic() - t0}
    finally:
        client.close()
        undeploy_llm(cfg, app.name, actor="ci", reason="end of test")


def _local_answer(cfg, app, root, version: str, body: dict[str, Any]) -> str:
    """What the version's weights answer, loaded in this process (no Serve)."""
    from mlplat.llm import ChatCompletionRequest, LLMCore, load_engine

    core = LLMCore(cfg, app, load_engine(cfg, app, version))
    status, out, _ = asyncio.run(core.handle(json.dumps(body).encode(), ChatCompletionRequest))
    assert status == 200 and out is not None
    return str(out["choices"][0]["message"]["content"])


def test_each_version_answers_from_its_own_deployment(llm_dep, record_property) -> None:
    from mlplat.deployment import version_app_name

    cfg, app, client, url = llm_dep["cfg"], llm_dep["app"], llm_dep["client"], llm_dep["url"]
    record_property("deploy_s", round(llm_dep["deploy_s"], 1))
    apps = _apps()
    assert apps[version_app_name(app.name, "1")] == "RUNNING"
    assert apps[version_app_name(app.name, "2")] == "RUNNING"
    stats = client.get(f"{url.removesuffix('/v1')}/stats").json()
    assert stats["placement"] == "deployments"
    pids = {v: s["pid"] for v, s in stats["served_by"].items()}
    # Three processes: the router replica and one replica per version.
    assert len({stats["pid"], pids["1"], pids["2"]}) == 3, stats["served_by"]
    split = {"1": 50.0, "2": 50.0}
    body = {**SHORT, "max_tokens": 8}
    for version in ("1", "2"):
        conv = _key_for(split, version, f"dep{version}-")
        r = client.post(f"{url}/chat/completions", json=body,
                        headers={"X-Conversation-Id": conv})
        assert r.status_code == 200, r.text
        assert r.headers["x-mlplat-version"] == version
        # The version's own weights answered: the same greedy text as loading them here.
        assert r.json()["choices"][0]["message"]["content"] == _local_answer(
            cfg, app, llm_dep["root"], version, body)
        # Streams go through the handle token by token, and name the version too.
        with client.stream("POST", f"{url}/chat/completions", json={**body, "stream": True},
                           headers={"X-Conversation-Id": conv}) as s:
            assert s.status_code == 200 and s.headers["x-mlplat-version"] == version
            lines = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) >= 3
    # Validation stays at the router: a bad request is a 4xx naming the field.
    r = client.post(f"{url}/chat/completions", json={**body, "max_tokens": 10_000})
    assert r.status_code == 400 and r.json()["field"] == "max_tokens"


def test_shadow_then_swap_starts_and_prunes_version_deployments(llm_dep, record_property) -> None:
    from mlplat.audit import AuditLog
    from mlplat.deployment import TrafficSplit, version_app_name
    from mlplat.llm import llm_shadow_report, set_llm_traffic
    from tests.services import poll

    cfg, app, url = llm_dep["cfg"], llm_dep["app"], llm_dep["url"]
    with _Chats(url, threads=3) as chats:
        # Shadow v1 behind production v2: the copies go to v1's own deployment.
        set_llm_traffic(cfg, app.name, TrafficSplit(weights={"2": 100}, shadow="1"),
                        actor="ci", reason="v2 live, v1 shadow")
        report = poll(lambda: llm_shadow_report(cfg, app.name),
                      lambda rep: (rep["comparisons"].get("2->1") or {}).get("comparisons", 0)
                      >= 5, 60, "5 shadow comparisons 2->1")
        # Then v2 alone: v1's application is deleted once the router no longer names it.
        t0 = time.monotonic()
        set_llm_traffic(cfg, app.name, TrafficSplit(weights={"2": 100}), actor="ci",
                        reason="v1 retired")
        swap_s = time.monotonic() - t0
        poll(_apps, lambda a: version_app_name(app.name, "1") not in a, 60,
             "v1's application to be deleted")
        after_prune = chats.versions.get("2", 0) + 5  # requests keep flowing after the prune
        poll(lambda: chats.versions.get("2", 0), lambda n: n >= after_prune, 30,
             "5 answers after v1 was deleted")
    pair = report["comparisons"]["2->1"]
    record_property("shadow", json.dumps({k: pair[k] for k in (
        "comparisons", "exact_match_rate", "mean_similarity")}))
    record_property("swap_s", round(swap_s, 2))
    record_property("requests_during_changes", json.dumps(chats.versions))
    assert report["failed"] == 0 and report["shadow"]["1"]["ttft_p99_ms"] is not None
    assert chats.failed == [], chats.failed[:3]  # no request failed across both changes
    assert chats.versions.get("2", 0) >= 5
    assert _apps()[version_app_name(app.name, "2")] == "RUNNING"
    rec = AuditLog(cfg).events(target=app.name, action_prefix="llm.set_traffic")[-1]
    assert rec.details["versions_deleted"] == ["1"] and rec.outcome == "ok"
