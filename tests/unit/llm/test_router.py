"""The LLM router on two real tiny versions, without Ray: sticky split, version named on
every answer, fallback on an injected fault, shadow comparison for text; and the SLO guard
with a fake clock (TTFT breach → canary weight 0, once)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mlplat.deployment import SplitPicker, TrafficSplit, VersionCounters
from mlplat.llm import ChatCompletionRequest, CompletionRequest

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "the router serves"}],
        "max_tokens": 6, "temperature": 0}


def _router(platform_config, llm_app, user_config: dict[str, Any]):
    from mlplat.llm import LLMCore, TokenAccounting, load_engine
    from mlplat.llm._router import LLMRouter

    router = LLMRouter("llm")
    new, to_load = router.plan(user_config)
    acc = TokenAccounting()
    router.commit(new, {v: LLMCore(platform_config, llm_app,
                                   load_engine(platform_config, llm_app, v), accounting=acc)
                        for v in to_load})
    return router


def _cfg(weights: dict[str, float], shadow: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny-chat", "split": {"weights": weights, "shadow": shadow}, **extra}


def test_request_key_prefers_conversation_then_user() -> None:
    from mlplat.llm._router import request_key

    assert request_key({"user": "u1"}, {"x-conversation-id": "c9"}) == ("conversation:c9",
                                                                        "conversation")
    assert request_key({"user": "u1"}, {}) == ("user:u1", "user")
    a, src = request_key({}, {})
    assert src == "random" and a != request_key({}, {})[0]
    assert request_key(None, {})[1] == "random"  # unparsable body: the core answers 400


def test_split_is_sticky_per_user_and_names_the_version(platform_config, llm_app) -> None:
    router = _router(platform_config, llm_app, _cfg({"1": 50, "2": 50}))
    picker = SplitPicker(TrafficSplit(weights={"1": 50, "2": 50}))

    async def run() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for i in range(12):
            user = f"user-{i}"
            for _ in range(2):
                status, body, _, version = await router.handle(
                    json.dumps({**CHAT, "user": user}).encode(), ChatCompletionRequest, {})
                assert status == 200 and body is not None
                assert body["system_fingerprint"] == f"tiny-chat-v{version}"
                assert version == picker.choose(f"user:{user}")
                seen.setdefault(user, set()).add(version)
        return seen

    seen = asyncio.run(run())
    assert all(len(v) == 1 for v in seen.values())  # sticky
    assert {next(iter(v)) for v in seen.values()} == {"1", "2"}  # both versions answer
    assert sum(router.requests.values()) == 24 and router.keys["user"] == 24
    # The two seeds are distinguishable versions: same prompt, different greedy text.
    texts = {}

    async def answer(v: str) -> str:
        _, body, _, _ = await router.handle(json.dumps(CHAT).encode(), ChatCompletionRequest,
                                            {"x-conversation-id": _key_for(picker, v)})
        return str(body["choices"][0]["message"]["content"])

    for v in ("1", "2"):
        texts[v] = asyncio.run(answer(v))
    assert texts["1"] != texts["2"]


def _key_for(picker: SplitPicker, version: str) -> str:
    return next(f"c{i}" for i in range(1000) if picker.choose(f"conversation:c{i}") == version)


def test_streaming_through_the_router_names_the_version(platform_config, llm_app) -> None:
    router = _router(platform_config, llm_app, _cfg({"1": 100}))

    async def run() -> tuple[int, str, list[str]]:
        status, _, stream, version = await router.handle(
            json.dumps({"model": "tiny-chat", "prompt": "the pool", "stream": True,
                        "max_tokens": 5, "temperature": 0}).encode(), CompletionRequest, {})
        assert stream is not None
        return status, version, [line async for line in stream]

    status, version, lines = asyncio.run(run())
    assert status == 200 and version == "1" and lines[-1].strip() == "data: [DONE]"
    assert router.slo["1"].requests == 1 and sum(router.slo["1"].extra["ttft"]) == 1


def test_injected_fault_falls_back_to_stable_and_counts_against_canary(
        platform_config, llm_app) -> None:
    router = _router(platform_config, llm_app,
                     _cfg({"1": 50, "2": 50}, stable="1",
                          faults={"2": {"error_rate": 1.0, "live_only": True}}))
    picker = SplitPicker(TrafficSplit(weights={"1": 50, "2": 50}))

    canary_key = _key_for(picker, "2")

    async def run() -> None:
        for _ in range(4):
            status, body, _, version = await router.handle(
                json.dumps(CHAT).encode(), ChatCompletionRequest,
                {"x-conversation-id": canary_key})
            assert status == 200 and version == "1" and body is not None

    asyncio.run(run())
    assert router.slo["2"].errors == 4 and router.fallbacks["2"] == 4
    assert router.slo["1"].requests == 4 and router.slo["1"].errors == 0


def test_a_fault_of_the_stable_version_itself_fails_the_request(platform_config, llm_app) -> None:
    """The deployment plane's rule, as for tabular apps: nothing to fall back to, so the
    request fails with a 503 (OpenAI error body) and counts against the version."""
    router = _router(platform_config, llm_app,
                     _cfg({"1": 100}, stable="1", faults={"1": {"error_rate": 1.0}}))

    async def run() -> tuple[int, dict[str, Any] | None, str]:
        status, body, _, version = await router.handle(
            json.dumps(CHAT).encode(), ChatCompletionRequest, {"x-conversation-id": "c1"})
        return status, body, version

    status, body, version = asyncio.run(run())
    assert status == 503 and version == "1", body
    assert body is not None and "injected fault on version 1" in body["error"]["message"]
    assert router.slo["1"].errors == 1 and router.requests["1"] == 0


def test_shadow_compares_text_off_the_request_path(platform_config, llm_app) -> None:
    router = _router(platform_config, llm_app, _cfg({"1": 100}, shadow="2"))

    async def run() -> None:
        for i in range(3):
            status, _, _, version = await router.handle(
                json.dumps({**CHAT, "user": f"u{i}"}).encode(), ChatCompletionRequest, {})
            assert status == 200 and version == "1"
        await router.drain()

    asyncio.run(run())
    report = router.shadow_report()
    pair = report["comparisons"]["1->2"]
    assert pair["comparisons"] == 3 and report["dropped"] == 0 and report["failed"] == 0
    assert 0.0 <= pair["mean_similarity"] <= 1.0 and pair["exact_match_rate"] is not None
    assert report["shadow"]["2"]["requests"] == 3 and report["shadow"]["2"]["ttft_p99_ms"]
    assert report["live"]["1"]["requests"] == 3


def test_compare_texts_known_numbers() -> None:
    from mlplat.llm._router import compare_texts, text_similarity

    c = compare_texts("1", "the canary measures the quota.", 7, "2",
                      "the canary measures a quota.", 6)
    assert (c.exact_match, c.token_delta) == (False, -1)
    assert c.similarity == pytest.approx(0.8)  # 4 of 5 words in order: 2*4/10
    assert text_similarity("", "") == 1.0 and text_similarity("a", "") == 0.0
    assert compare_texts("1", "x y", 2, "2", "x y", 2).exact_match


def test_breach_judges_named_histograms() -> None:
    from mlplat.deployment import SloWindows, breach

    c = VersionCounters()
    for _ in range(5):
        c.observe(3000, ok=True)
        c.observe_ms("ttft", 2500)
        c.observe_ms("itl", 20, 30)
    w = SloWindows(history_s=60)
    w.report("llm", "r1", {"2": c.snapshot()}, now=5.0)
    stats = w.window("llm", "2", start=0.0, now=6.0)
    assert stats.extra_samples == {"ttft": 5, "itl": 10}
    assert breach(stats, 0.05, None, 5, {"ttft": 1000, "itl": 500}) == \
        "ttft p99 5000 ms > 1000 ms (5 requests)"
    assert breach(stats, 0.05, None, 6, {"ttft": 1000}) is None  # too few to judge p99
    assert breach(stats, 0.05, None, 5, {"itl": 500}) is None


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_guard_rolls_back_a_slow_canary_once_and_spares_stable(platform_config) -> None:
    from mlplat.llm._guard import LLMSloGuard

    slo = platform_config.slos.llm
    clock = FakeClock()
    calls: list[tuple[str, TrafficSplit, str]] = []
    guard = LLMSloGuard(platform_config, lambda app, split, why, st: calls.append(
        (app, split, why)), clock=clock)
    split = {"weights": {"1": 50, "2": 50}, "shadow": None}
    fast, slow = VersionCounters(), VersionCounters()
    guard.report("llm", "r1", {"1": fast.snapshot(), "2": slow.snapshot()}, split, "1")
    clock.t += 0.5
    for _ in range(slo.min_samples):
        fast.observe(100, ok=True)
        fast.observe_ms("ttft", slo.ttft_p99_ms * 3)  # stable is never rolled back
        slow.observe(3000, ok=True)
        slow.observe_ms("ttft", slo.ttft_p99_ms * 2)
    guard.report("llm", "r1", {"1": fast.snapshot(), "2": slow.snapshot()}, split, "1")
    events = guard.tick()
    assert [e["version"] for e in events] == ["2"]
    assert calls[0][1].weights == {"1": 100.0, "2": 0.0}
    assert "ttft p99" in calls[0][2] and "v2" in calls[0][2]
    # The rolled-back split is now judged afresh: no second rollback of the same version.
    clock.t += 0.5
    guard.report("llm", "r1", {"1": fast.snapshot(), "2": slow.snapshot()},
                 calls[0][1].model_dump(mode="json"), "1")
    assert guard.tick() == [] and len(calls) == 1


def test_guard_under_min_samples_and_healthy_canary_keep_weights(platform_config) -> None:
    from mlplat.llm._guard import LLMSloGuard, without

    clock = FakeClock()
    calls: list[Any] = []
    guard = LLMSloGuard(platform_config, lambda *a: calls.append(a), clock=clock)
    split = {"weights": {"1": 90, "2": 10}, "shadow": None}
    c = VersionCounters()
    guard.report("llm", "r1", {"2": c.snapshot()}, split, "1")
    clock.t += 0.5
    for _ in range(platform_config.slos.llm.min_samples * 2):
        c.observe(200, ok=True)
        c.observe_ms("ttft", 50)
        c.observe_ms("itl", 10)
    guard.report("llm", "r1", {"2": c.snapshot()}, split, "1")
    assert guard.tick() == [] and calls == []
    assert without(TrafficSplit(weights={"1": 90, "2": 10}, shadow="3"), "2", "1") == \
        TrafficSplit(weights={"1": 100, "2": 0}, shadow="3")


def test_shadow_of_identical_weights_matches_exactly(platform_config, llm_app) -> None:
    """The comparison path end to end: a 'version 2' with version 1's weights agrees fully."""
    from mlplat.llm import LLMCore, load_engine
    from mlplat.llm._router import LLMRouter

    router = LLMRouter("llm")
    new, _ = router.plan(_cfg({"1": 100}, shadow="2"))
    same = load_engine(platform_config, llm_app, "1")
    router.commit(new, {"1": LLMCore(platform_config, llm_app, same),
                        "2": LLMCore(platform_config, llm_app, load_engine(
                            platform_config, llm_app, "1"))})

    async def run() -> None:
        for i in range(3):
            await router.handle(json.dumps({**CHAT, "user": f"u{i}"}).encode(),
                                ChatCompletionRequest, {})
        # A streamed live answer is compared too (text collected from the SSE lines).
        _, _, stream, _ = await router.handle(
            json.dumps({**CHAT, "stream": True}).encode(), ChatCompletionRequest, {})
        assert stream is not None
        _ = [line async for line in stream]
        await router.drain()

    asyncio.run(run())
    pair = router.shadow_report()["comparisons"]["1->2"]
    assert pair["comparisons"] == 4
    assert pair["exact_match_rate"] == 1.0 and pair["mean_similarity"] == 1.0
    assert pair["mean_abs_token_delta"] == 0


def test_a_blocked_version_is_answered_by_stable_before_the_split_changes(
        platform_config, llm_app) -> None:
    """The guard's reply to a push names the versions being rolled back: the replica stops
    answering with them at once, while its split still gives them weight."""
    router = _router(platform_config, llm_app, _cfg({"1": 50, "2": 50}, stable="1"))
    canary_key = _key_for(SplitPicker(TrafficSplit(weights={"1": 50, "2": 50})), "2")

    async def ask() -> str:
        status, body, _, version = await router.handle(
            json.dumps(CHAT).encode(), ChatCompletionRequest, {"x-conversation-id": canary_key})
        assert status == 200 and body is not None
        return version

    assert asyncio.run(ask()) == "2"
    router.set_blocked(["2"])
    assert [asyncio.run(ask()) for _ in range(3)] == ["1", "1", "1"]
    assert router.diverted["2"] == 3 and router.stats()["blocked"] == ["2"]
    router.set_blocked([])  # weights set by hand again: v2 answers its users
    assert asyncio.run(ask()) == "2"


def test_guard_blocks_the_canary_while_its_rollback_is_under_way(platform_config) -> None:
    from mlplat.llm._guard import LLMSloGuard

    slo = platform_config.slos.llm
    clock = FakeClock()
    during: list[list[str]] = []
    guard: LLMSloGuard = LLMSloGuard(
        platform_config, lambda app, split, why, st: during.append(guard.blocked(app)),
        clock=clock)
    split = {"weights": {"1": 50, "2": 50}, "shadow": None}
    fast, slow = VersionCounters(), VersionCounters()
    guard.report("llm", "r1", {"1": fast.snapshot(), "2": slow.snapshot()}, split, "1")
    clock.t += 0.5
    for _ in range(slo.min_samples):
        slow.observe(3000, ok=True)
        slow.observe_ms("ttft", slo.ttft_p99_ms * 2)
    guard.report("llm", "r1", {"1": fast.snapshot(), "2": slow.snapshot()}, split, "1")
    assert guard.blocked("llm") == []
    assert [e["version"] for e in guard.tick()] == ["2"]
    assert during == [["2"]]  # replicas pushing during the split change were told
    assert guard.blocked("llm") == []  # in force: weight 0 does the rest


def test_a_split_change_during_a_request_does_not_fail_it(platform_config, llm_app) -> None:
    """A request that picked v2 is still in its injected delay when a rollback drops v2 from
    the replica: it is answered (by v2, whose core it took), not a 500."""
    router = _router(platform_config, llm_app, _cfg({"1": 50, "2": 50}, stable="1",
                                                    faults={"2": {"delay_s": 0.3}}))
    canary_key = _key_for(SplitPicker(TrafficSplit(weights={"1": 50, "2": 50})), "2")

    async def run() -> tuple[int, str]:
        request = asyncio.create_task(router.handle(
            json.dumps(CHAT).encode(), ChatCompletionRequest, {"x-conversation-id": canary_key}))
        await asyncio.sleep(0)  # one turn of the loop: the request runs up to its fault delay
        assert sum(router.keys.values()) == 1 and router.requests["2"] == 0  # parked there
        new, to_load = router.plan(_cfg({"1": 100}, stable="1"))
        assert to_load == []
        router.commit(new, {})  # the rollback lands: v2 is dropped from the replica
        assert "2" not in router.cores
        status, _body, _, version = await request
        return status, version

    assert asyncio.run(run()) == (200, "2")


def test_shadow_copies_still_running_when_the_shadow_stage_ends_are_dropped(
        platform_config, llm_app) -> None:
    """Copies to v2 that finish after the split stops shadowing v2 would count as v2's
    evidence in its canary stage (and dilute its live error rate there): they are dropped."""
    router = _router(platform_config, llm_app, _cfg({"1": 100}, shadow="2",
                                                    faults={"2": {"delay_s": 30.0}}))

    async def run() -> None:
        for i in range(2):
            status, _, _, version = await router.handle(
                json.dumps({**CHAT, "user": f"u{i}"}).encode(), ChatCompletionRequest, {})
            assert status == 200 and version == "1"
        assert router.shadow_in_flight == 2  # the copies sleep in v2's injected delay
        new, _ = router.plan(_cfg({"1": 95, "2": 5}))  # canary-5: v2 is live, not shadow
        router.commit(new, {})
        await router.drain()

    asyncio.run(run())
    report = router.shadow_report()
    assert report["dropped"] == 2 and report["in_flight"] == 0 and report["failed"] == 0
    assert "2" not in report["shadow"] or report["shadow"]["2"]["requests"] == 0
    # No evidence for v2 from the dropped copies.
    assert (router.promotion_snapshot().get("2") or {}).get("requests", 0) == 0
