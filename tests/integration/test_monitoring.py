"""The drift-monitor and cost-meter actors on the shared multi-pool cluster."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from mlplat.config import load_config
from mlplat.contracts.v1 import DriftReport
from mlplat.governance import CostReport

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def poll(fn: Callable[[], T], ok: Callable[[T], bool], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if ok(last):
                return last
        except Exception as exc:  # the actor may be restarting
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout_s}s; last: {last!r}")


def rows(seed: int, n: int, amount_shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"amount": float(a), "age": int(b), "country": str(c)}
            for a, b, c in zip(rng.lognormal(3.0 + amount_shift, 0.8, n), rng.integers(18, 80, n),
                               rng.choice(["DE", "FR", "US"], n), strict=True)]


def scrape(node_id: str, needle: str) -> list[str]:
    """Sample lines containing ``needle`` from the Ray metrics endpoint of ``node_id``."""
    import urllib.request

    import ray

    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return [line for line in text.splitlines() if needle in line and not line.startswith("#")]


def run_job(script: str, address: str, *args: str) -> dict[str, Any]:
    """Run a jobs/ entrypoint as its own driver; return the JSON object it printed last."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": address}
    out = subprocess.run([sys.executable, script, *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_drift_monitor_actor_reports_and_survives_a_kill(ray_cluster: str,
                                                         session_home: Path) -> None:
    import ray

    from mlplat.monitoring import NAMESPACE, get_drift_monitor

    cfg = load_config(REPO / "platform.yaml")
    name = f"mlplat-drift-monitor-test-{os.getpid()}"
    mon = get_drift_monitor(cfg, name=name)
    try:
        assert get_drift_monitor(cfg, name=name) == mon  # get, not create a second one
        where = ray.get(mon.ping.remote(), timeout=60)
        assert where["pool"] == "cpu"
        version = f"it{os.getpid()}"  # unique tags on the shared cluster's metrics endpoint
        assert ray.get(mon.set_reference.remote("fraud", version, rows(1, 1500))) == 1500
        served = rows(2, 1500, amount_shift=0.7)
        for i in range(0, 1500, 100):  # fire-and-forget, as the router does
            mon.record.remote("fraud", version, served[i:i + 100], [0.5] * 100)
        poll(lambda: ray.get(mon.stats.remote()).buffered_rows, lambda n: n == 1500, 30,
             "1500 buffered rows")
        t0 = time.perf_counter()
        report = ray.get(mon.report.remote("fraud", version))
        print(f"drift report of 1500x3 rows in the actor: {time.perf_counter() - t0:.2f}s")
        assert report.current_rows == 1500 and set(report.features) == {"amount", "age", "country"}
        assert {n for n, f in report.features.items() if f.drifted} == {"amount"}
        assert ray.get(mon.latest_report.remote("fraud", version)) == report
        # The report's numbers reach the Ray metrics endpoint (what Prometheus scrapes).
        share = poll(lambda: scrape(where["node_id"], f'version="{version}"'),
                     lambda lines: any(ln.startswith("ray_mlplat_drift_share_drifted") for ln in lines),
                     45, "drift metrics on the metrics endpoint")
        line = next(ln for ln in share if ln.startswith("ray_mlplat_drift_share_drifted"))
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(report.share_drifted)
        # The job entrypoint prints the same report.
        printed = run_job("jobs/drift_report.py", ray_cluster, "--model", "fraud",
                          "--version", version, "--actor-name", name)
        assert DriftReport.model_validate(printed) == report

        ray.kill(mon, no_restart=False)
        # Named and restartable: the same name answers again, with an empty (in-memory) state.
        stats = poll(lambda: ray.get(ray.get_actor(name, namespace=NAMESPACE).stats.remote(),
                                     timeout=10),
                     lambda s: True, 45, "drift monitor restarted")
        assert (stats.reports_made, stats.buffered_rows) == (0, 0)
        assert ray.get(mon.latest_report.remote("fraud", version)) is None
    finally:
        ray.kill(mon, no_restart=True)


def test_cost_meter_actor_accumulates_per_team_and_model(ray_cluster: str,
                                                         session_home: Path) -> None:
    import ray

    from mlplat.governance import get_cost_meter

    cfg = load_config(REPO / "platform.yaml")
    name = f"mlplat-cost-meter-test-{os.getpid()}"
    meter = get_cost_meter(cfg, name=name)
    try:
        assert ray.get(meter.ping.remote(), timeout=60)["pool"] == "cpu"
        for _ in range(3):  # fire-and-forget
            meter.record_usage.remote("risk", "fraud", "replica", "serving-ondemand", 0.5, 60,
                                      "fraud-v1")
        meter.record_usage.remote("search", "ranker", "job", "training-spot", 2, 120, "build-1")
        meter.record_inferences.remote("fraud", 300)
        report = poll(lambda: ray.get(meter.report.remote(collect=False)),
                      lambda r: len(r.records) == 4 and r.inferences.get("fraud") == 300, 30,
                      "4 cost records")
        serving = cfg.pools["serving-ondemand"].price_usd_per_cpu_second
        training = cfg.pools["training-spot"].price_usd_per_cpu_second
        assert report.by_team == pytest.approx({"risk": 3 * 0.5 * 60 * serving,
                                                "search": 2 * 120 * training})
        assert report.by_model == pytest.approx({"fraud": 3 * 0.5 * 60 * serving,
                                                 "ranker": 2 * 120 * training})
        assert report.per_inference_usd == pytest.approx({"fraud": 3 * 0.5 * 60 * serving / 300})
        printed = run_job("jobs/cost_digest.py", ray_cluster, "--no-collect", "--actor-name", name)
        assert CostReport.model_validate(printed).by_team == pytest.approx(report.by_team)

        # Jobs on the cluster's job API are charged once each, however often they are collected.
        url = "http://" + ray._private.worker.get_dashboard_url()
        ray.get(meter.collect_jobs.remote(url))
        ray.get(meter.collect_jobs.remote(url))
        jobs = [r.source for r in ray.get(meter.report.remote(collect=False)).records
                if r.kind != "replica" and r.source != "build-1"]
        assert len(jobs) == len(set(jobs))
    finally:
        ray.kill(meter, no_restart=True)
