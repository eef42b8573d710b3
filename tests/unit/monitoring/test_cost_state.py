"""Cost from Ray's state API: tasks exactly, actors by sighting, Serve replicas by app,
dominant-share prices, periods, budgets and the digest."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mlplat.governance import CostMeter, CostStore, write_cost_digest

GIB = 1024 ** 3


class Clock:
    def __init__(self, t: float = 2_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


NODES = [{"node_id": "n-train", "labels": {"pool": "training-spot"}},
         {"node_id": "n-serve", "labels": {"pool": "serving-ondemand"}},
         {"node_id": "n-x", "labels": {}}]
JOBS = [{"job_id": "02000000", "submission_id": "raysubmit_a",
         "metadata": {"team": "search", "model": "ranker", "pool": "training-spot", "cpus": "1"},
         "status": "SUCCEEDED", "start_time": 1_000_000, "end_time": 1_100_000},
        {"job_id": "03000000", "submission_id": None, "metadata": {}, "status": "RUNNING"}]


def task(tid: str, job: str, node: str, start_s: float, end_s: float | None, **res: float) -> dict:
    return {"task_id": tid, "attempt_number": 0, "type": "NORMAL_TASK", "job_id": job,
            "node_id": node, "func_or_class_name": "work", "required_resources": res,
            "start_time_ms": start_s * 1000, "end_time_ms": None if end_s is None else end_s * 1000}


def test_tasks_are_charged_exactly_at_the_dominant_share(platform_config) -> None:
    clock = Clock()
    meter = CostMeter(platform_config, clock=clock)
    pool = platform_config.pools["training-spot"]
    tasks = [task("t1", "02000000", "n-train", 1000, 1010, CPU=0.5, memory=0.25 * GIB),
             task("t2", "02000000", "n-train", 1000, 1004, CPU=1, GPU=2),
             task("t3", "03000000", "n-train", 1000, 1010, CPU=1),     # no job metadata
             task("t4", "02000000", "n-x", 1000, 1010, CPU=1),         # node without pool
             task("t5", "02000000", "n-train", 1000, 1010)]            # holds nothing
    assert meter.ingest_state(NODES, JOBS, [], tasks) == 2
    assert meter.ingest_state(NODES, JOBS, [], tasks) == 2  # idempotent upserts
    meter.ingest_jobs(JOBS)  # the declared job charge is superseded by the measured one
    report = meter.report()
    per_s = pool.price_usd_per_hour / 3600
    expected = per_s * (0.5 / pool.cpus_per_node) * 10 + per_s * (2 / pool.gpus_per_node) * 4
    assert report.by_model == pytest.approx({"ranker": expected}, rel=1e-9)
    assert report.by_capacity == pytest.approx({"spot": expected})
    assert report.resource_seconds["search/ranker"] == pytest.approx(
        {"cpu": 0.5 * 10 + 1 * 4, "gpu": 8, "memory_gib": 2.5})
    assert report.unattributed == {"job without team/model metadata": 1,
                                   "node without a pool label": 1}


def test_serve_replicas_and_actors_by_sighting_and_cost_per_inference(platform_config) -> None:
    clock = Clock()
    meter = CostMeter(platform_config, clock=clock)
    replica = {"actor_id": "a1", "state": "ALIVE", "class_name": "ServeReplica:fraud:router",
               "node_id": "n-serve", "job_id": "01000000", "required_resources": {"CPU": 0.5}}
    unknown = {**replica, "actor_id": "a2", "class_name": "ServeReplica:nope-app:router"}
    meter.ingest_state(NODES, JOBS, [replica, unknown], [])
    clock.t += 600
    meter.ingest_state(NODES, JOBS, [replica, unknown], [])
    meter.record_inferences("fraud", 1200)
    report = meter.report()
    usd = platform_config.pools["serving-ondemand"].price_usd_per_cpu_second * 0.5 * 600
    assert report.by_team_model["risk"] == pytest.approx({"fraud": usd})
    assert list(report.by_team_model) == ["risk"]
    assert report.by_kind == pytest.approx({"replica": usd})
    assert report.per_inference_usd == pytest.approx({"fraud": usd / 1200})
    assert report.unattributed == {"serve app not in apps/ nor registered": 1}
    meter.register_serving("nope-app", "search", "ranker")
    meter.ingest_state(NODES, JOBS, [unknown], [])  # first sighting: nothing charged yet
    clock.t += 60
    meter.ingest_state(NODES, JOBS, [unknown], [])
    assert meter.report().by_team_model["search"] == pytest.approx({"ranker": usd / 10})
    # A version in its own application (`placement: deployments`, shadows) is its router's
    # app's cost: a GPU version replica of nope-app is billed to search/ranker.
    version = {**replica, "actor_id": "a3", "class_name": "ServeReplica:nope-app--v2:llm-version",
               "required_resources": {"CPU": 1, "GPU": 1}}
    before = meter.report().by_team_model["search"]["ranker"]
    meter.ingest_state(NODES, JOBS, [version], [])
    clock.t += 60
    meter.ingest_state(NODES, JOBS, [version], [])
    pool = platform_config.pools["serving-ondemand"]
    gpu_share = max(1 / pool.cpus_per_node, 1 / pool.gpus_per_node)
    assert meter.report().by_team_model["search"]["ranker"] == pytest.approx(
        before + pool.price_usd_per_hour / 3600 * gpu_share * 60)
    assert meter.report().unattributed == {}  # attributed, not "not registered"


def test_since_prorates_budgets_alert_once_and_state_survives(platform_config,
                                                             tmp_path: Path) -> None:
    clock = Clock()
    store = CostStore(tmp_path / "cost.db")
    meter = CostMeter(platform_config, clock=clock, store=store)
    budget = platform_config.teams["search"].budget_usd_per_week
    pool = platform_config.pools["training-spot"]
    nodes = 8  # eight whole nodes, for 10 % more than the weekly budget buys within a week
    hours = budget / (pool.price_usd_per_hour * nodes) * 1.1
    meter.record_usage("search", "ranker", "job", "training-spot", pool.cpus_per_node * nodes,
                       hours * 3600, "big")
    assert meter.budget_breaches() == [("search", pytest.approx(budget * 1.1),
                                        budget)]
    assert meter.budget_breaches() == []  # once per week
    half = meter.report(since=clock.t - hours * 1800)
    assert half.by_team["search"] == pytest.approx(budget * 0.55)
    assert half.budgets["search"]["used_share"] == pytest.approx(1.1)
    # A new meter on the same store (an actor restart) still knows the spend.
    again = CostMeter(platform_config, clock=clock, store=CostStore(tmp_path / "cost.db"))
    assert again.report().by_team["search"] == pytest.approx(budget * 1.1)
    md, csv_path = write_cost_digest(platform_config, again.report(), tmp_path / "digest")
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0]["team"] == "search" and float(rows[0]["usd"]) == pytest.approx(budget * 1.1)
    assert "⚠ over budget" in md.read_text()
