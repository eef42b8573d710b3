"""Promotion schedule and run: gates first, each step applied, held and audited; rollback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import PromotionStep, promotion_plan, run_promotion
from mlplat.errors import UserError
from tests.unit.deployment.conftest import make_card


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


class Recorder:
    def __init__(self, clock: FakeClock, fail_on: str | None = None) -> None:
        self.clock = clock
        self.applied: list[tuple[float, TrafficSplit, str]] = []
        self.audit: list[tuple[str, str, dict]] = []
        self.fail_on = fail_on

    def set_traffic(self, cfg, app, split, *, actor, reason=""):
        if self.fail_on and self.fail_on in reason:
            raise RuntimeError("serve controller unreachable")
        self.applied.append((self.clock(), split, reason))

    def sink(self, actor, action, target, reason="", details=None, outcome="ok"):
        self.audit.append((action, outcome, details or {}))


def good(app, version="4"):
    return SimpleNamespace(name=app.name, version=version, metrics={"val_auc": 0.95},
                           feature_spec=app.features, card=make_card(app, version))


def test_plan_follows_the_policy_and_profile_timing(platform_config) -> None:
    plan = promotion_plan(platform_config, "3", "4")
    timing = platform_config.active_profile().promotion_timing
    pcts = platform_config.promotion.canary_steps_pct
    assert [s.stage for s in plan] == ["shadow", *[f"canary-{p}" for p in pcts[:-1]],
                                       "production"]
    assert plan[0] == PromotionStep("shadow", TrafficSplit(weights={"3": 100, "4": 0},
                                                           shadow="4"), timing.shadow_min_s)
    assert [s.split.weights["4"] for s in plan[1:]] == [float(p) for p in pcts]
    assert all(s.hold_s == timing.canary_step_s for s in plan[1:])
    assert plan[-1].split.weights == {"3": 0.0, "4": 100.0}
    with pytest.raises(UserError, match="already the production version"):
        promotion_plan(platform_config, "4", "4")


def test_prod_profile_holds_longer(platform_config, monkeypatch) -> None:
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    plan = promotion_plan(platform_config, "3", "4")
    assert plan[0].hold_s == platform_config.profiles["prod"].promotion_timing.shadow_min_s


def test_run_applies_holds_and_audits_every_step(platform_config, fraud_app) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    seen: list[str] = []

    def on_step(step: PromotionStep) -> None:
        seen.append(step.stage)
        clock.now += 0.25  # sending traffic takes time; it counts towards the hold

    steps = run_promotion(platform_config, fraud_app, "3", "4", actor="alice", reason="retrain",
                          candidate_model=good(fraud_app), on_step=on_step,
                          set_traffic=rec.set_traffic, clock=clock, sleep=clock.sleep,
                          audit=rec.sink)
    plan = promotion_plan(platform_config, "3", "4")
    assert steps == plan and seen == [s.stage for s in plan]
    assert [split for _, split, _ in rec.applied] == [s.split for s in plan]
    # Each split is held at least its hold_s before the next one is applied.
    times = [t for t, _, _ in rec.applied]
    for step, t0, t1 in zip(plan, times, times[1:], strict=False):
        assert t1 - t0 == pytest.approx(step.hold_s)
    assert clock.now - times[-1] == pytest.approx(plan[-1].hold_s)
    actions = [(a, o) for a, o, _ in rec.audit]
    assert actions[0] == ("deployment.promotion.gates", "ok")
    assert actions[1:] == [("deployment.promotion.step", "ok")] * len(plan)
    assert [d["stage"] for _, _, d in rec.audit[1:]] == [s.stage for s in plan]


def test_failed_gates_refuse_and_change_nothing(platform_config, fraud_app) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    bad = good(fraud_app)
    bad.metrics = {"val_auc": 0.5}
    with pytest.raises(UserError, match=r"failed its promotion gates — metric: val_auc = 0.5 <"):
        run_promotion(platform_config, fraud_app, "3", "4", actor="alice", candidate_model=bad,
                      set_traffic=rec.set_traffic, clock=clock, sleep=clock.sleep,
                      audit=rec.sink)
    assert rec.applied == []
    assert [(a, o) for a, o, _ in rec.audit] == [("deployment.promotion.gates", "denied")]


def test_a_failing_step_rolls_back_to_production(platform_config, fraud_app) -> None:
    clock = FakeClock()
    rec = Recorder(clock, fail_on="canary-25")
    with pytest.raises(RuntimeError, match="unreachable"):
        run_promotion(platform_config, fraud_app, "3", "4", actor="alice",
                      candidate_model=good(fraud_app), set_traffic=rec.set_traffic,
                      clock=clock, sleep=clock.sleep, audit=rec.sink)
    assert rec.applied[-1][1] == TrafficSplit(weights={"3": 100, "4": 0})
    assert "rollback" in rec.applied[-1][2]
    outcomes = [(a, o) for a, o, _ in rec.audit]
    assert ("deployment.promotion.step", "failed") in outcomes
    assert outcomes[-1] == ("deployment.promotion.rollback", "ok")
    assert rec.audit[-1][2]["last_stage"] == "canary-5"
