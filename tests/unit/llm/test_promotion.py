"""LLM versions through the promotion controller, without Ray: LLM SLOs judge the windows,
the candidate gates read the model folders, the shadow stage ends on the text gate."""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import pytest

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import LATENCY_BUCKETS_MS, PromotionController, PromotionStore
from mlplat.llm._config import LLMAppConfig
from mlplat.llm._guard import LLMSloGuard
from mlplat.llm._promotion import LLMPort, combined_snapshot, llm_judge


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Port(LLMPort):
    """The real gates on real model folders; the router is a list of splits and a report."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.splits: list[tuple[TrafficSplit, str | None]] = []
        self.aliases: dict[str, str] = {}
        self.similarity = 0.9

    def apply_split(self, app, split, *, stable, actor, reason) -> None:
        self.splits.append((split, stable))

    def current_split(self, app) -> TrafficSplit | None:
        return self.splits[-1][0] if self.splits else None

    def _shadow_report(self, app) -> dict[str, Any]:
        return {"comparisons": {"1->2": {"comparisons": 12, "exact_match_rate": 0.5,
                                         "mean_similarity": self.similarity}}}

    def staging_version(self, model: str) -> str | None:
        return None

    def set_aliases(self, model, aliases) -> str | None:
        for alias, version in aliases.items():
            if version is None:
                self.aliases.pop(alias, None)
            else:
                self.aliases[alias] = version
        return None

    def alert(self, app, severity, summary, labels) -> str:
        return "recorded"


@pytest.fixture()
def world(platform_config, llm_app, tmp_path):
    clock = Clock()
    port = Port(platform_config)
    audit: list[tuple[str, str, str]] = []

    def sink(actor, action, target, reason="", details=None, outcome="ok"):
        audit.append((actor, action, outcome))

    c = PromotionController(platform_config, PromotionStore(tmp_path / "llm.db"), port, sink,
                            clock=clock, judge=llm_judge(platform_config),
                            app_type=LLMAppConfig)
    c.register_app(llm_app, "tiny-chat", production="1")
    return {"c": c, "clock": clock, "port": port, "audit": audit, "cfg": platform_config,
            "app": llm_app.name}


def hist(count: int, ms: float) -> list[int]:
    buckets = [0] * len(LATENCY_BUCKETS_MS)
    buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] = count
    return buckets


def run(world, seconds: float, *, ttft_ms: float = 50.0, step: float = 0.25) -> None:
    """Advance the clock; the replica pushes the candidate's counters (live + shadow). Every
    generation takes 4 s end to end: a whole generation's time is not an LLM SLO."""
    c, clock = world["c"], world["clock"]
    end = clock.now + seconds
    counts = world.setdefault("counts", {"n": 0, "slow": 0})
    while clock.now < end:
        clock.now += step
        counts["n"] += 2
        counts["slow"] += 2 if ttft_ms > 50 else 0
        n, slow = counts["n"], counts["slow"]
        ttft = [a + b for a, b in zip(hist(n - slow, 50.0), hist(slow, ttft_ms), strict=True)]
        c.report(world["app"], "replica-a", {"2": {
            "requests": n, "errors": 0, "buckets": hist(n, 4000.0),
            "extra": {"ttft": ttft, "itl": hist(n, 20.0)}}})
        c.tick()


def test_walks_shadow_canaries_to_production_on_llm_slos(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    out = c.start(world["app"], "2", actor="alice", reason="new tune")
    assert out["status"] == "running", out["history"]
    assert {g["name"] for g in out["history"][0]["gates"]} == {"model_files", "vocabulary"}
    timing = cfg.active_profile().promotion_timing
    run(world, timing.shadow_min_s + 4 * (timing.canary_step_s + timing.evaluation_window_s) + 10)
    rollout = c.status(world["app"])["rollout"]
    assert rollout["status"] == "done", rollout["history"]
    assert [s.weights.get("2", 0) for s, _ in port.splits] == \
        [0.0, *[float(p) for p in cfg.promotion.canary_steps_pct]]
    shadow_passed = next(h for h in rollout["history"]
                         if h["event"] == "stage_passed" and h["stage"] == "shadow")
    assert shadow_passed["gate"]["name"] == "shadow_similarity" and shadow_passed["gate"]["passed"]
    assert port.aliases == {"production": "2"}


def test_a_ttft_breach_in_a_canary_rolls_back(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start(world["app"], "2", actor="alice", reason="new tune")
    run(world, timing.shadow_min_s + timing.evaluation_window_s + 0.5)
    assert c.status(world["app"])["rollout"]["stage"].startswith("canary")
    run(world, 2 * timing.evaluation_window_s, ttft_ms=2 * cfg.slos.llm.ttft_p99_ms)
    rollout = c.status(world["app"])["rollout"]
    assert rollout["status"] == "rolled_back"
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    assert "ttft p99" in back["why"]
    assert port.splits[-1][0] == TrafficSplit(weights={"1": 100})


def test_shadow_answers_unlike_productions_fail_the_text_gate(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    port.similarity = cfg.slos.llm.min_shadow_similarity / 2
    timing = cfg.active_profile().promotion_timing
    c.start(world["app"], "2", actor="alice", reason="new tune")
    run(world, timing.shadow_min_s + 2 * timing.evaluation_window_s)
    rollout = c.status(world["app"])["rollout"]
    assert rollout["status"] == "rolled_back", rollout["history"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    assert back["stage"] == "shadow" and "shadow_similarity" in back["why"]
    assert all(s.weights.get("2", 0) == 0 for s, _ in port.splits)  # never got live traffic


def test_a_version_without_its_tokenizer_is_rejected(world, tiny_models) -> None:
    broken: Path = tiny_models["1"].parent / "3"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text((tiny_models["1"] / "config.json").read_text())
    out = world["c"].start(world["app"], "3", actor="alice", reason="half a folder")
    assert out["status"] == "rejected"
    gate = next(g for g in out["history"][0]["gates"] if g["name"] == "model_files")
    assert not gate["passed"] and "tokenizer" in gate["detail"]
    assert world["port"].splits == []
    assert ("alice", "deployment.promotion.gates", "denied") in world["audit"]


def test_the_guard_leaves_an_app_in_a_rollout_to_the_controller(platform_config) -> None:
    rolled: list[str] = []
    clock = Clock()
    guard = LLMSloGuard(platform_config, lambda app, *a: rolled.append(app), clock=clock,
                        promoting=lambda app: app == "promoting")
    slow = {"2": {"requests": 10, "errors": 0, "buckets": hist(10, 50.0),
                  "extra": {"ttft": hist(10, 5000.0)}}}
    for app in ("promoting", "by-hand"):
        guard.report(app, "r", {"2": {"requests": 0, "errors": 0, "buckets": hist(0, 1.0)}},
                     {"weights": {"1": 50, "2": 50}}, "1")
    clock.now += 1
    for app in ("promoting", "by-hand"):
        guard.report(app, "r", slow, {"weights": {"1": 50, "2": 50}}, "1")
    guard.tick()
    assert rolled == ["by-hand"]


def test_live_and_shadow_counters_add_up() -> None:
    live = {"2": {"requests": 3, "errors": 1, "buckets": [3, 0], "extra": {"ttft": [3, 0]}}}
    shadow = {"2": {"requests": 5, "errors": 0, "buckets": [0, 5], "extra": {"ttft": [1, 4]}},
              "3": {"requests": 1, "errors": 0, "buckets": [1, 0]}}
    out = combined_snapshot(live, shadow)
    assert json.loads(json.dumps(out)) == {
        "2": {"requests": 8, "errors": 1, "buckets": [3, 5], "extra": {"ttft": [4, 4]}},
        "3": {"requests": 1, "errors": 0, "buckets": [1, 0]}}


def test_the_guard_judges_a_trickle_of_slow_canary_answers(platform_config) -> None:
    """Six slow generations, one or two per evaluation window: no single window holds
    ``min_samples``, the widened one does, and the canary is rolled back."""
    rolled: list[str] = []
    clock = Clock()
    guard = LLMSloGuard(platform_config, lambda app, *a: rolled.append(app), clock=clock)
    window = platform_config.active_profile().promotion_timing.evaluation_window_s
    split = {"weights": {"1": 50, "2": 50}}
    n = 0
    guard.report("llm", "r", {"2": {"requests": 0, "errors": 0, "buckets": hist(0, 1.0)}},
                 split, "1")
    for step in range(4):
        clock.now += window
        n += 2 if step % 2 else 1
        guard.report("llm", "r", {"2": {"requests": n, "errors": 0, "buckets": hist(n, 50.0),
                                        "extra": {"ttft": hist(n, 5000.0)}}}, split, "1")
        guard.tick()
    assert n == 6 >= platform_config.slos.llm.min_samples
    assert rolled == ["llm"]


def test_the_text_gate_judges_every_replicas_shadow_answers(platform_config, llm_app) -> None:
    """One replica's comparisons alike, the other's not: the gate judges their sum, not
    whichever replica a call happens to reach."""
    from mlplat.llm._promotion import LLMPort, ShadowFleet
    from mlplat.llm._router import ShadowTextTotals, compare_texts

    def sums(similar: int, unlike: int) -> dict[str, dict[str, float]]:
        totals = ShadowTextTotals()
        for _ in range(similar):
            totals.add(compare_texts("1", "the canary", 2, "2", "the canary", 2))
        for _ in range(unlike):
            totals.add(compare_texts("1", "the canary", 2, "2", "quota drift", 2))
        return {"1->2": totals.sums()}

    fleet = ShadowFleet(history_s=60)
    port = LLMPort(platform_config, shadow_comparisons=lambda app: fleet.comparisons(app, 5.0))
    fleet.report(llm_app.name, "replica-a", sums(10, 0), now=1.0)
    alone = port.stage_gate(llm_app, "1", "2", "shadow")
    assert alone is not None and alone.passed  # what replica-a alone would say
    fleet.report(llm_app.name, "replica-b", sums(0, 30), now=2.0)
    gate = port.stage_gate(llm_app, "1", "2", "shadow")
    assert gate is not None and not gate.passed
    assert "mean similarity 0.250 < 0.5 over 40 shadow answers from 2 replicas" in gate.detail
    # A replica that stopped reporting (gone) no longer counts.
    assert fleet.comparisons(llm_app.name, now=70.0) == {}


def test_the_controller_judges_a_trickle_of_slow_canary_answers(
        platform_config, llm_app, tmp_path) -> None:
    """In canary-5 a quiet LLM app sends the candidate one or two generations per window, each
    with a slow first token. No single window holds ``min_samples``; the controller widens the
    stage's window until one does, and rolls back in canary-5 instead of passing the stage on
    windows too small to judge."""
    clock = Clock()
    port = Port(platform_config)
    slo = platform_config.slos.llm
    c = PromotionController(platform_config, PromotionStore(tmp_path / "llm.db"), port,
                            lambda *a, **k: None, clock=clock, judge=llm_judge(platform_config),
                            app_type=LLMAppConfig, min_window_requests=slo.min_samples)
    c.register_app(llm_app, "tiny-chat", production="1")
    world = {"c": c, "clock": clock, "port": port, "app": llm_app.name}
    timing = platform_config.active_profile().promotion_timing
    c.start(llm_app.name, "2", actor="alice", reason="new tune")
    for _ in range(400):  # a healthy shadow, until the 5 % canary is applied
        if c.status(llm_app.name)["rollout"]["stage"] == "canary-5":
            break
        run(world, 0.25)
    assert c.status(llm_app.name)["rollout"]["stage"] == "canary-5"
    n = world["counts"]["n"]
    slow = world["counts"]["slow"]
    for step in range(12):  # a trickle: 1 or 2 slow answers per window
        clock.now += timing.evaluation_window_s
        n, slow = n + (2 if step % 2 else 1), slow + (2 if step % 2 else 1)
        ttft = [a + b for a, b in zip(hist(n - slow, 50.0), hist(slow, 2 * slo.ttft_p99_ms),
                                      strict=True)]
        c.report(llm_app.name, "replica-a", {"2": {
            "requests": n, "errors": 0, "buckets": hist(n, 4000.0),
            "extra": {"ttft": ttft, "itl": hist(n, 20.0)}}})
        c.tick()
        if c.status(llm_app.name)["rollout"]["status"] != "running":
            break
    rollout = c.status(llm_app.name)["rollout"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    assert back["stage"] == "canary-5" and "ttft p99" in back["why"], rollout["history"]


def test_the_guard_does_not_roll_back_what_a_rollout_just_ended(platform_config) -> None:
    """A replica may report the canary split for a moment after the controller rolled the
    rollout back: the guard, which left the app to the controller, must not judge that stale
    split (a second rollback racing the controller's and the next change)."""
    rolled: list[str] = []
    promoting = {"llm": True}
    clock = Clock()
    guard = LLMSloGuard(platform_config, lambda app, *a: rolled.append(app), clock=clock,
                        promoting=lambda app: promoting[app])
    window = platform_config.active_profile().promotion_timing.evaluation_window_s
    canary = {"weights": {"1": 95, "2": 5}}

    def push(n_errors: int) -> None:
        guard.report("llm", "r", {"2": {"requests": n_errors, "errors": n_errors,
                                        "buckets": hist(n_errors, 50.0)}}, canary, "1")

    push(0)
    clock.now += 1
    push(3)  # the canary fails: the controller judges and rolls it back
    guard.tick()
    promoting["llm"] = False  # the rollout ended (rolled back)
    clock.now += 0.5
    push(4)  # a last report with the old canary split and its errors
    guard.tick()
    assert rolled == []
    clock.now += window + 0.1
    push(5)  # a canary split still reported a window later is the app's own again
    guard.tick()
    assert rolled == ["llm"]
