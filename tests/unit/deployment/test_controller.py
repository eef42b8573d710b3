"""PromotionController without Ray: stages, SLO-gated advance, rollback, override, restart."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mlplat.contracts.v1 import GateResult, TrafficSplit
from mlplat.deployment import ControllerCommands, PromotionController, PromotionStore
from mlplat.errors import (
    AuthenticationError,
    GateBlockedError,
    PermissionDeniedError,
    UserError,
)
from mlplat.secrets import person_token
from tests.unit.deployment.conftest import FakeLoader


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Port:
    """Records what the controller does to the world; the registry is a dict of aliases."""

    def __init__(self, app) -> None:
        self.loader = FakeLoader(app)
        self.splits: list[tuple[TrafficSplit, str | None]] = []
        self.aliases: dict[str, str] = {}
        self.alerts: list[tuple[str, str]] = []
        self.staging: str | None = None
        self.features_ok = True
        self.drift: float | None = 0.0  # None: the monitor has no served data to judge on

    def apply_split(self, app, split, *, stable, actor, reason) -> None:
        self.splits.append((split, stable))

    def current_split(self, app) -> TrafficSplit | None:
        return self.splits[-1][0] if self.splits else None

    def load_candidate(self, app, model, version) -> Any:
        return self.loader(model, version)

    def gate_extras(self, app, model, version, candidate, production):
        return self.drift, [GateResult(name="features", passed=self.features_ok, detail="test")]

    def rollback_target_check(self, app, model, version) -> GateResult:
        return GateResult(name="features", passed=True, detail="ok")

    def staging_version(self, model: str) -> str | None:
        return self.staging

    def set_aliases(self, model, aliases) -> str | None:
        for alias, version in aliases.items():
            if version is None:
                self.aliases.pop(alias, None)
            else:
                self.aliases[alias] = version
        return None

    def alert(self, app, severity, summary, labels) -> str:
        self.alerts.append((severity, summary))
        return "recorded"


@pytest.fixture()
def world(platform_config, fraud_app, tmp_path):
    clock = Clock()
    port = Port(fraud_app)
    audit: list[tuple[str, str, str]] = []

    def sink(actor, action, target, reason="", details=None, outcome="ok"):
        audit.append((actor, action, outcome))

    store = PromotionStore(tmp_path / "promotions.db")

    def make() -> PromotionController:
        return PromotionController(platform_config, store, port, sink, clock=clock)

    c = make()
    c.register_app(fraud_app, "fraud", production="1")
    return {"c": c, "make": make, "clock": clock, "port": port, "audit": audit,
            "cfg": platform_config, "app": fraud_app}


def snap(requests: int, errors: int, latency_bucket: int = 3) -> dict[str, Any]:
    buckets = [0] * 21
    buckets[latency_bucket] = requests
    return {"requests": requests, "errors": errors, "buckets": buckets}


def run(world, seconds: float, *, errors_on_candidate: bool = False, step: float = 0.25,
        version: str = "2") -> None:
    """Advance the fake clock, with the router pushing healthy (or failing) candidate counts."""
    c, clock = world["c"], world["clock"]
    end = clock.now + seconds
    # Cumulative per replica across calls, as a live replica's counters are.
    counts = world.setdefault("counts", {})
    while clock.now < end:
        clock.now += step
        total, errors = counts.get(version, (0, 0))
        total, errors = total + 2, errors + (2 if errors_on_candidate else 0)
        counts[version] = (total, errors)
        c.report("fraud", "replica-a", {version: snap(total, errors)})
        c.tick()


def test_walks_shadow_canary_production_and_syncs_aliases(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    out = c.start("fraud", "2", actor="alice", reason="retrain")
    assert out["status"] == "running" and out["stage"] == "shadow"
    timing = cfg.active_profile().promotion_timing
    run(world, timing.shadow_min_s + 4 * (timing.canary_step_s + timing.evaluation_window_s) + 10)
    rollout = c.status("fraud")["rollout"]
    assert rollout["status"] == "done", rollout["history"]
    applied = [s.weights.get("2", 0) for s, _ in port.splits]
    assert applied == [0.0, *[float(p) for p in cfg.promotion.canary_steps_pct]]
    assert port.splits[0][0].shadow == "2"
    assert all(stable == "1" for _, stable in port.splits)  # v1 answers if v2 fails
    assert port.aliases == {"production": "2"}
    stages = [h for h in rollout["history"] if h["event"] == "stage"]
    # Every stage held at least max(hold, evaluation window) before the next one.
    for a, b in itertools.pairwise(stages):
        assert b["t"] - a["t"] >= timing.evaluation_window_s
    assert c.status("fraud")["last_good"] == "2"


def test_canary_errors_roll_back_within_two_windows(world) -> None:
    """Seen in the window it starts, confirmed by the next one's traffic (one rule for
    rollouts and the production guard): two windows, well inside rollback_after_breach_s."""
    c, port, cfg = world["c"], world["port"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, timing.shadow_min_s + timing.evaluation_window_s + 0.5)  # healthy shadow
    assert c.status("fraud")["rollout"]["stage"].startswith("canary")
    canary_at = world["clock"].now
    run(world, 3 * timing.evaluation_window_s, errors_on_candidate=True)
    rollout = c.status("fraud")["rollout"]
    assert rollout["status"] == "rolled_back"
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    assert back["t"] - canary_at <= 2 * timing.evaluation_window_s
    assert 2 * timing.evaluation_window_s <= cfg.slos.deployment.rollback_after_breach_s
    assert "error rate" in back["why"]
    assert port.splits[-1][0] == TrafficSplit(weights={"1": 100})
    assert port.aliases == {"production": "1"}
    assert port.alerts and "rolled back v2 → v1" in port.alerts[0][1]
    assert ("promotion-controller", "deployment.rollback", "ok") in world["audit"]


def test_a_slow_start_of_a_stage_does_not_roll_the_candidate_back(world) -> None:
    """The demo's failure on a loaded box: the shadow version's first requests (a freshly
    started version application) took a second, the stage's first window breached its p99 on
    18 requests and the rollout was undone 2.7 s into shadow. A breach is acted on only when
    the traffic after its first sighting breaches too; healthy traffic after it is a blip."""
    c, cfg, clock = world["c"], world["cfg"], world["clock"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    counts = world.setdefault("counts", {})
    slow_bucket = 20  # past promotion.rollback_max_p99_ms
    for i in range(6):  # 12 slow first requests in 0.5 s
        clock.now += 0.1
        counts["2"] = (2 * (i + 1), 0)
        c.report("fraud", "replica-a", {"2": snap(2 * (i + 1), 0, slow_bucket)})
        c.tick()
    assert c.status("fraud")["rollout"]["status"] == "running"
    # Healthy from here; the next reports carry the slow ones in their cumulative buckets.
    slow = snap(12, 0, slow_bucket)["buckets"]

    def healthy(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            clock.now += 0.25
            total, _ = counts["2"]
            counts["2"] = (total + 2, 0)
            fast = snap(total + 2 - 12, 0)["buckets"]
            c.report("fraud", "replica-a", {"2": {"requests": total + 2, "errors": 0,
                                                "buckets": [a + b for a, b in zip(slow, fast, strict=True)]}})
            c.tick()

    healthy(timing.shadow_min_s + 2 * timing.evaluation_window_s)
    rollout = c.status("fraud")["rollout"]
    assert rollout["status"] == "running" and rollout["stage"] != "shadow", rollout["history"]
    assert not any(h["event"] == "rolled_back" for h in rollout["history"])


def test_failed_gate_rejects_and_changes_nothing(world) -> None:
    world["port"].features_ok = False
    out = world["c"].start("fraud", "2", actor="alice", reason="retrain")
    assert out["status"] == "rejected"
    assert world["port"].splits == []
    assert ("alice", "deployment.promotion.gates", "denied") in world["audit"]


def long_shadow(cfg):
    """The config with a prod-like shadow minimum (one hour)."""
    name = cfg.active_profile_name()
    profile = cfg.profiles[name]
    timing = profile.promotion_timing.model_copy(update={"shadow_min_s": 3600.0})
    profile = profile.model_copy(update={"promotion_timing": timing})
    return cfg.model_copy(update={"profiles": {**cfg.profiles, name: profile}})


def test_shadow_minimum_only_bypassed_by_a_named_override(world, platform_config) -> None:
    c = world["c"] = PromotionController(long_shadow(platform_config), world["c"].store,
                                         world["port"], world["c"].audit, clock=world["clock"])
    c.start("fraud", "2", actor="alice", reason="retrain")
    c.tick()  # applies shadow
    with pytest.raises(UserError, match="needs a reason"):
        c.override("fraud", "carol", " ")
    run(world, 60)  # well past the evaluation window, far below the hour
    before = c.status("fraud")["rollout"]["stage"]
    c.override("fraud", "carol", "INC-42 hotfix")
    run(world, 0.5)
    rollout = c.status("fraud")["rollout"]
    assert before == "shadow" and rollout["stage"] != "shadow"
    assert rollout["override_by"] == "carol"
    assert ("carol", "deployment.promotion.override", "ok") in world["audit"]
    assert ("carol", "deployment.promotion.override", "denied") in world["audit"]


def test_a_new_controller_resumes_from_the_store(world) -> None:
    c, cfg = world["c"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, timing.shadow_min_s + timing.evaluation_window_s + 0.5)
    stage = c.status("fraud")["rollout"]["stage"]
    assert stage.startswith("canary")
    world["c"] = world["make"]()  # the actor was killed: a fresh process, same store
    run(world, 60)
    assert world["c"].status("fraud")["rollout"]["status"] == "done"


def test_registry_poll_starts_a_promotion_once(world) -> None:
    world["port"].staging = "2"
    world["c"].tick()
    assert world["c"].status("fraud")["rollout"]["source"] == "registry-poll"
    world["c"].rollback("fraud", actor="bob", reason="changed my mind")
    world["clock"].now += 60
    world["c"].tick()  # same alias value: not started again
    assert world["c"].status("fraud")["rollout"]["status"] == "rolled_back"


def test_manual_rollback_undoes_the_last_promotion(world) -> None:
    c = world["c"]
    with pytest.raises(UserError, match="nothing to roll back"):
        c.rollback("fraud", actor="bob", reason="x")
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, 60)
    assert c.status("fraud")["last_good"] == "2"
    out = c.rollback("fraud", actor="bob", reason="business metric dropped")
    assert out["status"] == "rolled_back" and c.status("fraud")["last_good"] == "1"
    assert world["port"].splits[-1][0] == TrafficSplit(weights={"1": 100})
    with pytest.raises(UserError, match="already production"):
        c.start("fraud", "1", actor="alice")


def test_rollback_undoes_the_last_completed_promotion_after_a_rejected_one(world) -> None:
    c, port = world["c"], world["port"]
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, 60)
    port.features_ok = False
    assert c.start("fraud", "3", actor="alice", reason="retrain")["status"] == "rejected"
    out = c.rollback("fraud", actor="bob", reason="undo v2")
    assert out["candidate"] == "2" and c.status("fraud")["last_good"] == "1"


def test_a_stage_without_candidate_traffic_waits_instead_of_passing(world) -> None:
    """An empty window breaches nothing: without the minimum, a quiet app's 5 % canary would
    pass on no evidence at all."""
    c, cfg = world["c"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    for _ in range(200):  # healthy shadow, until the 5 % canary is applied
        if c.status("fraud")["rollout"]["stage"] == "canary-5":
            break
        run(world, 0.25)
    assert c.status("fraud")["rollout"]["stage"] == "canary-5"
    clock = world["clock"]
    for _ in range(int(10 * timing.evaluation_window_s / 0.25)):  # ten windows, no requests
        clock.now += 0.25
        c.tick()
    rollout = c.status("fraud")["rollout"]
    assert rollout["stage"] == "canary-5" and rollout["status"] == "running"
    waiting = [h for h in rollout["history"] if h["event"] == "waiting_for_traffic"]
    needed = cfg.promotion.min_stage_requests
    assert len(waiting) == 1 and waiting[0]["served"] < needed == waiting[0]["needed"]
    run(world, timing.canary_step_s + timing.evaluation_window_s)  # traffic comes back
    assert c.status("fraud")["rollout"]["stage"] != "canary-5"


def test_rolled_back_version_is_blocked_in_report_replies_until_promoted_again(world) -> None:
    c, cfg = world["c"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    assert c.report("fraud", "replica-a", {"2": snap(0, 0)}) == []
    run(world, timing.shadow_min_s + timing.evaluation_window_s + 0.5)
    run(world, 2 * timing.evaluation_window_s + 0.5, errors_on_candidate=True)
    assert c.status("fraud")["rollout"]["status"] == "rolled_back"
    assert c.report("fraud", "replica-a", {"2": snap(0, 0)}) == ["2"]
    assert c.report("other-app", "replica-a", {}) == []
    told = c.status("fraud")["blocked"]["2"]
    assert told["replica_told_at"] >= told["since"]
    c.start("fraud", "2", actor="alice", reason="fixed")
    assert c.report("fraud", "replica-a", {"2": snap(0, 0)}) == []


def test_stage_evidence_is_this_stages_when_a_stage_outlasts_the_slo_history(
        platform_config, fraud_app, tmp_path) -> None:
    """Prod timing: 900 s canary steps, 60 s windows, so the controller keeps 240 s of
    snapshots. A canary stage with no traffic of its own must wait, not pass on the requests
    its replica counted in earlier stages."""
    name = platform_config.active_profile_name()
    prod = platform_config.profiles["prod"].promotion_timing
    cfg = platform_config.model_copy(update={"profiles": {
        **platform_config.profiles,
        name: platform_config.profiles[name].model_copy(update={"promotion_timing": prod})}})
    clock, port = Clock(), Port(fraud_app)
    c = PromotionController(cfg, PromotionStore(tmp_path / "p.db"), port,
                            lambda *a, **k: None, clock=clock)
    c.register_app(fraud_app, "fraud", production="1")
    assert c.slo.history_s < prod.canary_step_s  # the premise
    c.start("fraud", "2", actor="alice", reason="retrain")
    c.tick()
    c.override("fraud", "carol", "INC-7: skip the day-long shadow")
    total = 0

    def serve(seconds: float, per_push: int) -> None:
        nonlocal total
        end = clock.now + seconds
        while clock.now < end:
            clock.now += 30
            total += per_push
            c.report("fraud", "replica-a", {"2": snap(total, 0)})
            c.tick()

    def stage() -> str:
        return str(c.status("fraud")["rollout"]["stage"])

    for _ in range(200):  # the override ends the shadow; canary-5 sees healthy traffic
        if stage() == "canary-25":
            break
        serve(30, 35)
    assert stage() == "canary-25" and total >= 10 * cfg.promotion.min_stage_requests
    serve(3 * prod.canary_step_s, 0)  # three step lengths without one canary request
    rollout = c.status("fraud")["rollout"]
    assert rollout["stage"] == "canary-25" and rollout["status"] == "running", [
        h for h in rollout["history"] if h["event"] in ("stage_passed", "waiting_for_traffic")]
    waiting = [h for h in rollout["history"] if h["event"] == "waiting_for_traffic"]
    assert waiting and waiting[-1]["served"] == 0
    serve(prod.canary_step_s, 35)  # traffic comes back: the stage passes on its own evidence
    assert stage() == "canary-50"


# --------------------------------------------------------------------------- no way around


def test_a_gate_that_fails_or_cannot_be_judged_blocks_unless_an_incident_commander_accepts_it(
        world) -> None:
    c, port = world["c"], world["port"]
    port.drift = None  # no served traffic in the monitor to compare with
    out = c.start("fraud", "2", actor="alice", reason="retrain")
    drift = next(g for g in out["history"][0]["gates"] if g["name"] == "drift")
    assert out["status"] == "rejected" and not drift["passed"] and not drift["judged"]
    assert "cannot be judged" in drift["detail"] and port.splits == []
    out = c.start("fraud", "2", actor="carol", reason="retrain", override_by="carol")
    drift = next(g for g in out["history"][0]["gates"] if g["name"] == "drift")
    assert out["status"] == "running" and drift["passed"] and "carol" in drift["detail"]
    c.rollback("fraud", actor="carol", reason="next case")
    port.features_ok = False  # a gate that was judged and failed: the override names it
    out = c.start("fraud", "3", actor="carol", reason="INC-8", override_by="carol")
    features = next(g for g in out["history"][0]["gates"] if g["name"] == "features")
    assert out["status"] == "running"
    assert "failed, accepted by incident commander carol" in features["detail"]
    c.rollback("fraud", actor="carol", reason="next case")
    port.loader = None  # a version that cannot be loaded is never accepted
    out = c.start("fraud", "4", actor="carol", reason="INC-8", override_by="carol")
    assert out["status"] == "rejected"


def test_a_first_release_judges_every_gate(platform_config, fraud_app, tmp_path) -> None:
    port, audit = Port(fraud_app), []
    c = PromotionController(platform_config, PromotionStore(tmp_path / "p.db"), port,
                            lambda actor, action, target, **k: audit.append((actor, action,
                                                                             k.get("outcome"))),
                            clock=Clock())
    port.drift = None  # nothing served yet: always the case for a first release
    out = c.first_release(fraud_app, "fraud", "1", actor="alice", reason="first")
    gates = {g["name"]: g for g in out["history"][0]["gates"]}
    assert {"metric", "schema", "model_card", "features", "drift"} <= set(gates)
    assert out["status"] == "rejected" and not gates["drift"]["judged"]
    out = c.first_release(fraud_app, "fraud", "1", actor="carol", reason="first",
                          override_by="carol")
    assert out["status"] == "released"
    assert audit[-1] == ("carol", "deployment.first_release", "ok")
    c.register_app(fraud_app, "fraud", "1")  # what deploy(controller=...) does next
    port.splits.append((TrafficSplit(weights={"1": 100}), None))  # … and its router serves
    with pytest.raises(UserError, match="already serves v1"):
        c.first_release(fraud_app, "fraud", "2", actor="carol", override_by="carol")


def test_weights_by_hand_only_for_versions_that_earned_traffic(world) -> None:
    c, port = world["c"], world["port"]
    canary = TrafficSplit(weights={"1": 90, "2": 10})
    with pytest.raises(GateBlockedError, match="gates: v2 never went through") as err:
        c.set_weights("fraud", canary, actor="alice", reason="try v2")
    assert err.value.http_status == 409
    assert port.splits == [] and ("alice", "deployment.set_weights", "denied") in world["audit"]
    port.features_ok = False
    c.start("fraud", "2", actor="alice", reason="retrain")  # rejected: features
    with pytest.raises(GateBlockedError, match=r"failed gate\(s\) \['features'\]"):
        c.set_weights("fraud", canary, actor="alice", reason="try v2")
    port.features_ok = True
    c.start("fraud", "2", actor="alice", reason="retrain")
    with pytest.raises(UserError, match="in a rollout"):
        c.set_weights("fraud", canary, actor="alice", reason="try v2")
    run(world, world["cfg"].active_profile().promotion_timing.shadow_min_s / 2)
    c.rollback("fraud", actor="alice", reason="stop")  # before its shadow stage completed
    with pytest.raises(GateBlockedError, match="rollback: v2 was rolled back"):
        c.set_weights("fraud", canary, actor="alice", reason="try v2")
    # The last good version may always take traffic; an incident commander may override.
    c.set_weights("fraud", TrafficSplit(weights={"1": 100}), actor="alice", reason="reset")
    c.report("fraud", "replica-a", {})
    assert "2" in c._blocked["fraud"]
    out = c.set_weights("fraud", canary, actor="carol", reason="INC-9", override_by="carol")
    assert out["overridden"] and port.splits[-1][0] == canary
    assert c.report("fraud", "replica-a", {}) == []  # the rolled-back block is cleared


def test_weights_by_hand_after_a_completed_shadow_stage(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    timing = cfg.active_profile().promotion_timing
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, 60)  # done: v2 is production
    assert c.status("fraud")["last_good"] == "2"
    c.set_weights("fraud", TrafficSplit(weights={"1": 30, "2": 70}), actor="bob",
                  reason="hedge")  # both earned traffic: v1 was live, v2 passed everything
    assert port.splits[-1][0].weights == {"1": 30, "2": 70}
    assert timing.shadow_min_s > 0


def _serve(world, seconds: float, failing: set[str], versions=("1", "2"), step=0.25) -> None:
    c, clock = world["c"], world["clock"]
    counts = world.setdefault("counts", {})
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        snapshot = {}
        for v in versions:
            total, errors = counts.get(v, (0, 0))
            counts[v] = (total + 4, errors + (4 if v in failing else 0))
            snapshot[v] = snap(*counts[v])
        c.report("fraud", "replica-a", snapshot)
        c.tick()


def _healthy_hand_set_canary(world) -> float:
    """An incident commander's canary {1: 90, 2: 10}, served healthily for three windows."""
    window = world["cfg"].active_profile().promotion_timing.evaluation_window_s
    world["c"].set_weights("fraud", TrafficSplit(weights={"1": 90, "2": 10}), actor="carol",
                           reason="INC-9 canary", override_by="carol")
    _serve(world, 3 * window, failing=set())
    return float(window)


def test_the_controller_rolls_back_a_hand_set_canary_that_starts_failing(world) -> None:
    c, port, cfg = world["c"], world["port"], world["cfg"]
    window = _healthy_hand_set_canary(world)
    assert port.splits[-1][0].weights == {"1": 90, "2": 10}  # healthy: left alone
    breach_at = world["clock"].now
    _serve(world, 3 * window, failing={"2"})
    rollout = c.status("fraud")["rollout"]
    back = next(h for h in rollout["history"] if h["event"] == "rolled_back")
    assert rollout["source"] == "guard" and rollout["status"] == "rolled_back"
    assert port.splits[-1][0] == TrafficSplit(weights={"1": 100})
    assert back["t"] - breach_at <= cfg.slos.deployment.rollback_after_breach_s
    assert c.report("fraud", "replica-a", {}) == ["2"]  # replicas stop answering with v2 at once
    assert port.alerts and ("promotion-controller", "deployment.rollback", "ok") in world["audit"]


def test_one_slow_moment_does_not_roll_a_live_version_back(world) -> None:
    c, port = world["c"], world["port"]
    window = _healthy_hand_set_canary(world)
    _serve(world, 0.25, failing={"2"})  # one bad moment (a replica's single push)
    _serve(world, 3 * window, failing=set())
    assert port.splits[-1][0].weights == {"1": 90, "2": 10}
    assert c.status("fraud")["rollout"] is None


def test_the_controller_undoes_a_promotion_whose_production_degrades_later(world) -> None:
    c, port = world["c"], world["port"]
    c.start("fraud", "2", actor="alice", reason="retrain")
    run(world, 60)
    assert c.status("fraud")["rollout"]["status"] == "done"
    _serve(world, 10, failing={"2"}, versions=("2",))
    status = c.status("fraud")
    assert status["last_good"] == "1" and status["rollout"]["source"] == "guard"
    assert port.splits[-1][0] == TrafficSplit(weights={"1": 100})
    assert port.aliases == {"production": "1"}


def test_a_failing_version_with_nowhere_to_go_alerts_once(world) -> None:
    port = world["port"]
    port.splits.append((TrafficSplit(weights={"1": 100}), None))
    _serve(world, 10, failing={"1"}, versions=("1",))
    assert port.splits[-1][0] == TrafficSplit(weights={"1": 100})  # nothing to roll back to
    assert len(port.alerts) == 1 and "no earlier good version" in port.alerts[0][1]


# --------------------------------------------------------------------------- identity


class Commands(ControllerCommands):
    def __init__(self, controller) -> None:
        self._controller = controller


def test_commands_act_as_whoever_the_token_belongs_to(world) -> None:
    cfg = world["cfg"]
    cmd = Commands(world["c"])
    with pytest.raises(AuthenticationError):
        cmd.rollback("fraud", None, "no token")
    with pytest.raises(AuthenticationError):
        cmd.rollback("fraud", "not-a-token", "bad token")
    with pytest.raises(PermissionDeniedError, match="'deployer' role") as err:
        cmd.start("fraud", "2", person_token(cfg, "dana"), "viewer tries")
    assert err.value.http_status == 403
    out = cmd.start("fraud", "2", person_token(cfg, "alice"), "retrain")
    assert out["started_by"] == "alice"
    with pytest.raises(PermissionDeniedError, match="incident-commander"):
        cmd.override("fraud", person_token(cfg, "alice"), "I am not one")
    world["c"].tick()
    assert cmd.override("fraud", person_token(cfg, "carol"), "INC-1")["override_by"] == "carol"
    denied = [(a, act) for a, act, o in world["audit"] if o == "denied"]
    assert denied == [("anonymous", "deployment.rollback"), ("anonymous", "deployment.rollback"),
                      ("dana", "deployment.promote"), ("alice", "deployment.promotion_override")]
