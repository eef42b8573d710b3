"""RouterCore without Ray: routing, answers, errors, shadow mirroring, drift sampling."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import DriftSampler, RouterCore, ShadowComparison
from mlplat.errors import InfraError, UserError


def core_for(app, loader, lookup, **kw) -> RouterCore:
    return RouterCore(app.name, app.features, app.serving.threshold, loader, lookup, **kw)


def cfg_for(split: TrafficSplit, **kw) -> dict:
    return {"model": "fraud", "split": split.model_dump(), **kw}


def body(account_id: int = 3, amount: float | None = 10.0, request_id: str | None = None) -> bytes:
    b = {"entity": {"account_id": account_id},
         "features": {"amount": amount, "merchant_category": "travel"}}
    if request_id is not None:
        b["request_id"] = request_id
    return json.dumps(b).encode()


def test_answers_with_the_chosen_version_label_and_missing_features(fraud_app, fake_loader,
                                                                    lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    status, out, job = core.respond(body(account_id=7, request_id="abc"))
    assert status == 200 and job is None
    assert out["model"] == "fraud" and out["version"] == "1" and out["request_id"] == "abc"
    assert out["score"] == pytest.approx(0.2 + 10.0 / 1e6)
    assert out["label"] == 0  # below app.serving.threshold
    assert out["features_missing"] == ["txn_count_1h"]
    # Unknown entity: every looked-up feature missing, still answered.
    status, out, _ = core.respond(body(account_id=999, amount=None))
    assert status == 200
    assert set(out["features_missing"]) == {
        *(f for v in fraud_app.features.feature_views for f in v.features), "amount"}
    assert len(out["request_id"]) == 32  # generated


def test_split_is_followed_and_counted(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 75, "2": 25})))
    seen = {}
    for i in range(2000):
        status, out, _ = core.respond(body(request_id=f"r{i}"))
        assert status == 200
        seen[out["version"]] = seen.get(out["version"], 0) + 1
        assert out["label"] == int(out["score"] >= fraud_app.serving.threshold)
    assert abs(seen["2"] / 2000 - 0.25) < 0.04
    assert core.stats()["requests"] == seen
    # Same request id → same version, every time.
    versions = {core.respond(body(request_id="sticky"))[1]["version"] for _ in range(20)}
    assert len(versions) == 1


def test_bad_input_is_4xx_and_counted_never_500(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    status, out, _ = core.respond(b'{"entity": {"account_id": 1}, "features": {"amount": "x", '
                                  b'"merchant_category": "travel"}}')
    assert status == 400 and out["field"] == "features.amount"
    status, out, _ = core.respond(b"nope")
    assert status == 400 and out["field"] == "<body>"
    assert core.stats()["rejected"] == {"400": 2}
    assert core.stats()["errors"] == 0


# Issue 19's hostile classes, each answered before (500/503 or a silent NaN) and now a 4xx
# naming the field: non-finite numbers, integers too large, deep nesting, huge bodies.
HOSTILE = [
    (b'{"entity": {"account_id": 1}, "features": {"amount": Infinity, '
     b'"merchant_category": "travel"}}', 400, "features.amount", "Infinity is not a finite"),
    (b'{"entity": {"account_id": 1}, "features": {"amount": -Infinity, '
     b'"merchant_category": "travel"}}', 400, "features.amount", "-Infinity is not a finite"),
    (b'{"entity": {"account_id": 1}, "features": {"amount": NaN, '
     b'"merchant_category": "travel"}}', 400, "features.amount", "NaN is not a finite"),
    (b'{"entity": {"account_id": 1}, "features": {"amount": 1e999, '
     b'"merchant_category": "travel"}}', 400, "features.amount", "Infinity is not a finite"),
    (b'{"entity": {"account_id": 1}, "features": {"amount": ' + b"9" * 400 +
     b', "merchant_category": "travel"}}', 400, "features.amount", "64-bit integer range"),
    (b'{"entity": {"account_id": ' + b"9" * 5000 + b'}}', 400, "<body>", "number too large"),
    (b'{"entity": {"account_id": 18446744073709551616}}', 400, "entity.account_id",
     "64-bit integer range"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "<body>", "nests deeper than 32"),
    (b'{"entity": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, 400, "entity" + ".a" * 31,
     "nested deeper than 32"),
    (b'{"entity": {"account_id": 1}, "features": {"amount": 1, "merchant_category": "' +
     b"x" * 2_000_000 + b'"}}', 413, "<body>", "the limit is 1048576"),
]


@pytest.mark.parametrize(("raw", "status", "field", "message"), HOSTILE,
                         ids=["inf", "-inf", "nan", "1e999", "bigint-feature", "4300-digits",
                              "bigint-key", "100k-nesting", "40-nesting", "2MB"])
def test_hostile_bodies_are_4xx_naming_the_field(fraud_app, fake_loader, lookup, raw, status,
                                                 field, message) -> None:
    from mlplat.config import RequestLimits

    core = core_for(fraud_app, fake_loader, lookup, limits=RequestLimits())
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    got, out, _ = core.respond(raw)
    assert (got, out["field"]) == (status, field), out
    assert message in out["error"], out["error"]
    assert core.stats()["errors"] == 0  # the client's bad input is never our outage


def test_body_limits_come_from_platform_yaml(fraud_app, fake_loader, lookup) -> None:
    from mlplat.config import RequestLimits

    core = core_for(fraud_app, fake_loader, lookup,
                    limits=RequestLimits(max_body_bytes=1024, max_json_depth=2))
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    assert core.respond(body())[0] == 200  # depth 2: {"entity": {...}}
    status, out, _ = core.respond(body(request_id="r" * 2000))
    assert status == 413 and "limit is 1024" in out["error"]


def test_backend_failures_map_to_their_status(fraud_app, fake_loader) -> None:
    class Down:
        def get(self, entities):
            raise ConnectionError("redis down")

    core = core_for(fraud_app, fake_loader, Down())
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    status, out, _ = core.respond(body())
    assert status == 503 and "redis down" in out["error"] and out["type"] == "InfraError"
    fake_loader.models["1"].fail = True
    core._lookup = type("Ok", (), {"get": lambda self, e: [{}]})()
    status, out, _ = core.respond(body())
    assert status == 500 and out["type"] == "InternalError"


def test_no_split_yet_is_404(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    status, out, _ = core.respond(body())
    assert status == 404 and "deploy" in out["error"]
    with pytest.raises(UserError, match="no traffic split"):
        _ = core.split


def test_reconfigure_loads_new_versions_and_drops_unreferenced(fraud_app, fake_loader,
                                                               lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    assert core.apply(cfg_for(TrafficSplit(weights={"1": 100}))) == {"loaded": ["1"],
                                                                     "dropped": []}
    change = core.apply(cfg_for(TrafficSplit(weights={"1": 100, "2": 0}, shadow="3")))
    assert change == {"loaded": ["2", "3"], "dropped": []}
    change = core.apply(cfg_for(TrafficSplit(weights={"3": 100})))
    assert change == {"loaded": [], "dropped": ["1", "2"]}
    assert core.loaded_versions == ["3"]
    assert fake_loader.loaded == [("fraud", "1"), ("fraud", "2"), ("fraud", "3")]


def test_failed_load_keeps_the_previous_split(fraud_app, lookup) -> None:
    from tests.unit.deployment.conftest import FakeLoader

    loader = FakeLoader(fraud_app, fail_versions={"9"})
    core = core_for(fraud_app, loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 100})))
    with pytest.raises(InfraError, match=r"could not load fraud version 9.*previous split"):
        core.apply(cfg_for(TrafficSplit(weights={"1": 50, "9": 50})))
    assert core.split == TrafficSplit(weights={"1": 100})
    assert core.respond(body())[0] == 200
    with pytest.raises(UserError, match="invalid router user_config"):
        core.apply({"model": "fraud", "split": {"weights": {"1": 50}}})


def test_shadow_runs_off_path_and_is_compared(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 100, "2": 0}, shadow="2")))

    async def run() -> list[dict]:
        outs = []
        for i in range(30):
            _status, out, job = core.respond(body(request_id=f"r{i}", amount=float(i)))
            assert job is not None and job.shadow_version == "2"
            outs.append(out)
            core.submit_shadow(job)
            await core.drain_shadow()
        return outs

    outs = asyncio.run(run())
    assert {o["version"] for o in outs} == {"1"}  # callers only ever see live versions
    stats = core.stats()["shadow"]
    assert stats["version"] == "2" and stats["comparisons"] == 30
    assert stats["mean_abs_diff"] == pytest.approx(0.5)
    # v1 scores ≈0.2 (label 0), v2 ≈0.7 (label 1): they never agree.
    assert stats["agreement_rate"] == 0.0
    last = core.recent_shadow(1)[0]
    assert isinstance(last, ShadowComparison) and last.request_id == "r29"
    assert last.live_version == "1" and last.shadow_score == pytest.approx(0.7 + 29 / 1e6)
    assert fake_loader.models["2"].calls == 30
    core.close()


def test_shadow_is_bounded_and_drops_are_counted(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 100, "2": 0}, shadow="2"),
                       tuning={"shadow_max_in_flight": 2, "shadow_buffer_size": 3}))

    async def burst() -> list[bool]:
        accepted = []
        for i in range(10):
            _, _, job = core.respond(body(request_id=f"b{i}"))
            accepted.append(core.submit_shadow(job))  # no await in between: nothing finishes
        await core.drain_shadow()
        return accepted

    accepted = asyncio.run(burst())
    assert accepted == [True, True] + [False] * 8
    stats = core.stats()["shadow"]
    assert stats["dropped"] == 8 and stats["comparisons"] == 2 and stats["in_flight"] == 0
    fake_loader.models["2"].fail = True
    for i in range(5):
        _, _, job = core.respond(body(request_id=f"c{i}"))

        async def one(job=job) -> None:
            core.submit_shadow(job)
            await core.drain_shadow()

        asyncio.run(one())
    stats = core.stats()["shadow"]
    assert stats["failed"] == 5
    assert len(core.recent_shadow(100)) == 2  # buffer bound 3, failures not recorded
    core.close()


def test_drift_samples_are_queued_bounded_and_batched(fraud_app, fake_loader, lookup) -> None:
    core = core_for(fraud_app, fake_loader, lookup, drift_sample_rate=1.0)
    core.apply(cfg_for(TrafficSplit(weights={"1": 50, "2": 50}),
                       tuning={"drift_queue_size": 100, "drift_batch_size": 40}))
    for i in range(120):
        core.respond(body(request_id=f"d{i}"))
    assert core.drift.stats()["sampled"] == 120 and core.drift.dropped == 20
    received = []
    batches = core.drift.drain(core.tuning.drift_batch_size)
    core.drift.send(batches, lambda m, v, rows, scores, ids: received.append((v, len(rows), ids))
                    or True)
    assert sum(n for _, n, _ in received) == 100
    assert all(n <= 40 for _, n, _ in received)
    assert {v for v, _, _ in received} == {"1", "2"}
    # The caller's request ids travel with the samples (outcomes join on them).
    assert sorted(i for _, _, ids in received for i in ids) == sorted(f"d{i}" for i in range(100))
    assert core.drift.stats() == {"sampled": 120, "sent": 100, "dropped": 20, "queued": 0}


def test_drift_monitor_absent_counts_drops() -> None:
    sampler = DriftSampler(rate=0.5, queue_size=1000, rng=random.Random(1))
    taken = sum(sampler.offer("m", "1", {"x": 1.0}, 0.1) for _ in range(1000))
    assert 400 < taken < 600
    sampler.send(sampler.drain(50), lambda *a: False)
    sampler.send([("m", "1", [{}], [0.0], [None])], lambda *a: 1 / 0)
    assert sampler.dropped == taken + 1 and sampler.sent == 0


def test_blocked_version_is_answered_by_the_stable_one(fraud_app, fake_loader, lookup) -> None:
    """The controller's reply to an SLO report blocks a rolled-back version at once; its
    requests go to the stable version until the report stops listing it."""
    core = core_for(fraud_app, fake_loader, lookup)
    core.apply(cfg_for(TrafficSplit(weights={"1": 50, "2": 50}), stable="1"))
    core.set_blocked(["2"])
    answered = {core.respond(body(request_id=f"b{i}"))[1]["version"] for i in range(200)}
    assert answered == {"1"}
    assert 60 < core.stats()["diverted"]["2"] < 140 and core.stats()["blocked"] == ["2"]
    core.set_blocked([])
    answered = {core.respond(body(request_id=f"b{i}"))[1]["version"] for i in range(200)}
    assert answered == {"1", "2"}
    # Never diverted onto a blocked stable version.
    core.set_blocked(["1", "2"])
    assert core.respond(body(request_id="b7"))[0] == 200
