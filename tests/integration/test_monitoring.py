"""The drift-monitor and cost-meter actors on the shared multi-pool cluster: tumbling windows
published within seconds, metrics on both endpoints, state that survives a kill, and the
drift → retrain loop (one audited job per episode)."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplat.config import load_config
from mlplat.contracts.v1 import DriftReport
from mlplat.governance import CostReport
from tests.services import free_port, poll

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]




def rows(seed: int, n: int, amount_shift: float = 0.0,
         countries: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"amount": float(a), "age": int(b), "country": str(c)}
            for a, b, c in zip(rng.lognormal(3.0 + amount_shift, 0.8, n), rng.integers(18, 80, n),
                               rng.choice(["DE", "FR", "US"], n, p=list(countries)), strict=True)]


def scrape_ray(node_id: str, needle: str) -> list[str]:
    """Sample lines containing ``needle`` from the Ray metrics endpoint of ``node_id``."""
    import ray

    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return [line for line in text.splitlines() if needle in line and not line.startswith("#")]


def scrape(port: int, needle: str) -> list[str]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return [line for line in text.splitlines() if needle in line and not line.startswith("#")]


def run_job(script: str, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """Run a jobs/ entrypoint's main() in this (connected) driver; return its last JSON line.

    In-process rather than as a new driver: a second ``ray.init`` costs 10-20 s on this box, and
    the entrypoints reuse an existing connection exactly as they do under ``ray job submit``.
    """
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    code = module.main(list(args))
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out.strip().splitlines()[-1])


def test_drift_windows_close_on_their_own_publish_metrics_and_survive_a_kill(
        ray_cluster: str, session_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from mlplat.monitoring import NAMESPACE, get_drift_monitor

    cfg = load_config(REPO / "platform.yaml")
    window_s = cfg.active_profile().monitoring_timing.drift_window_s
    name = f"mlplat-drift-monitor-test-{os.getpid()}"
    port = free_port()
    mon = get_drift_monitor(cfg, name=name, metrics_port=port, retrain=False)
    try:
        assert get_drift_monitor(cfg, name=name) == mon  # get, not create a second one
        where = ray.get(mon.ping.remote(), timeout=240)
        assert where["pool"] == "cpu" and where["metrics_port"] == str(port)
        version = f"it{os.getpid()}"  # unique tags on the shared cluster's metrics endpoint
        ref = rows(1, 1500)
        assert ray.get(mon.set_reference.remote("fraud", version, ref,
                                                scores=[0.2] * len(ref))) == 1500
        served = rows(2, 1500, amount_shift=0.7)
        sent_at = time.monotonic()
        # Fire-and-forget, as the router does; one batch, so the window cannot close mid-way.
        mon.record.remote("fraud", version, served, [0.2] * 1500,
                          [f"tx-{i}" for i in range(1500)])
        # Nobody calls report(): the tumbling window closes by itself and is published.
        report = poll(lambda: ray.get(mon.latest_report.remote("fraud", version)),
                      lambda r: r is not None, window_s + 60, "a closed window's report")
        published_s = time.monotonic() - sent_at
        print(f"window of {window_s}s published {published_s:.1f}s after the first sample")
        assert report.current_rows == 1500 and set(report.features) == {"amount", "age", "country"}
        assert {n for n, f in report.features.items() if f.drifted} == {"amount"}
        assert report.severity == "warning"  # 1/3 drifted ≥ monitoring.drift_share_warning
        assert report.prediction_drift is not None and not report.prediction_drift.drifted
        # The Prometheus endpoint of the actor and the Ray metrics endpoint show it.
        line = poll(lambda: scrape(port, f'version="{version}"'),
                    lambda ls: any(ln.startswith("mlplat_drift_share_drifted") for ln in ls),
                    30, "drift share on the actor's /metrics")
        share = next(ln for ln in line if ln.startswith("mlplat_drift_share_drifted"))
        assert float(share.rsplit(" ", 1)[1]) == pytest.approx(report.share_drifted)
        assert any(ln.startswith("mlplat_drift_window_lag_seconds") for ln in line)
        poll(lambda: scrape_ray(where["node_id"], f'version="{version}"'),
             lambda ls: any(ln.startswith("ray_mlplat_drift_share_drifted") for ln in ls),
             60, "drift metrics on the Ray metrics endpoint")
        # Where the full Evidently report for people goes (written off-path; its content is
        # checked in tests/unit/monitoring/test_fast.py, it takes minutes on a loaded box).
        assert report.evidently_report is not None
        assert report.evidently_report.startswith(str(session_home))
        # The job entrypoint prints the same report.
        printed = run_job("jobs/drift_report.py", capsys, "--model", "fraud",
                          "--version", version, "--actor-name", name)
        assert DriftReport.model_validate(printed) == report

        mon.record.remote("fraud", version, served[:50], [0.2] * 50)  # an open window of 50
        poll(lambda: ray.get(mon.stats.remote()).windows[f"fraud/{version}"].buffered_rows,
             lambda n: n == 50, 30, "50 buffered rows")
        ray.kill(mon, no_restart=False)
        # Restartable and persistent: a read through the handle held across the restart waits
        # for the new instance instead of failing (ActorUnavailableError), and gets the same state.
        stats = ray.get(mon.stats.remote(), timeout=90)
        assert stats.windows[f"fraud/{version}"].buffered_rows == 50
        # And the name still finds it.
        again = ray.get(ray.get_actor(name, namespace=NAMESPACE).stats.remote(), timeout=30)
        assert again.windows[f"fraud/{version}"].reference_rows == 1500
        assert stats.windows[f"fraud/{version}"].reference_rows == 1500
        assert ray.get(mon.latest_report.remote("fraud", version)) == report
    finally:
        ray.kill(mon, no_restart=True)


def test_critical_drift_submits_one_audited_retraining_job_per_episode(
        ray_cluster: str, ray_dashboard_url: str, session_home: Path) -> None:
    import ray
    from ray.job_submission import JobSubmissionClient

    from mlplat.audit import AuditLog
    from mlplat.monitoring import get_drift_monitor

    cfg = load_config(REPO / "platform.yaml")
    name = f"mlplat-drift-retrain-test-{os.getpid()}"
    model = f"fraud-rt{os.getpid()}"
    mon = get_drift_monitor(cfg, name=name, metrics_port=0, dashboard_url=ray_dashboard_url)
    client = JobSubmissionClient(ray_dashboard_url)

    def jobs() -> list[Any]:
        return [j for j in client.list_jobs() if (j.metadata or {}).get("model") == model]

    try:
        target = ray.get(mon.set_retrain_target.remote(
            model, app="fraud", dataset=str(session_home / "datasets" / "missing")), timeout=240)
        assert target["team"] == "risk" and target["pool"] == "training-spot"
        ray.get(mon.set_reference.remote(model, "1", rows(1, 1500)))
        drifted = rows(3, 600, amount_shift=1.5, countries=(0.1, 0.2, 0.7))
        mon.record.remote(model, "1", drifted, [0.9] * 600)
        state = poll(lambda: ray.get(mon.retrain_state.remote(model)), lambda s: s is not None,
                     60, "a retraining submission")
        (job,) = poll(jobs, lambda js: len(js) == 1, 30, "one job on the job API")
        assert job.submission_id == state["job_id"]
        assert job.entrypoint.startswith("python jobs/train.py --app fraud --dataset")
        assert job.metadata["trigger"] == "drift" and job.metadata["team"] == "risk"
        # Same episode, within the cooldown: a second critical window submits nothing.
        mon.record.remote(model, "1", rows(4, 600, amount_shift=1.5,
                                           countries=(0.1, 0.2, 0.7)), [0.9] * 600)
        second = ray.get(mon.report.remote(model, "1"))
        assert second.severity == "critical"
        assert len(jobs()) == 1
        events = [e for e in AuditLog(cfg).events() if e.target == f"model:{model}/1"]
        assert [(e.action, e.outcome, e.details["job_id"]) for e in events] == [
            ("monitoring.retrain", "ok", state["job_id"])]
    finally:
        for j in jobs():
            if str(j.status) in {"PENDING", "RUNNING"}:
                client.stop_job(j.submission_id)
        ray.kill(mon, no_restart=True)


def test_cost_meter_actor_accumulates_per_team_and_model(
        ray_cluster: str, session_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from mlplat.governance import get_cost_meter

    cfg = load_config(REPO / "platform.yaml")
    name = f"mlplat-cost-meter-test-{os.getpid()}"
    port = free_port()
    meter = get_cost_meter(cfg, name=name, metrics_port=port, sample=False)
    try:
        assert ray.get(meter.ping.remote(), timeout=240)["pool"] == "cpu"
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
        assert report.per_inference_usd == pytest.approx({"fraud": 3 * 0.5 * 60 * serving / 300})
        usd = poll(lambda: scrape(port, 'team="search"'),
                   lambda ls: any(ln.startswith("mlplat_cost_usd{") for ln in ls), 10,
                   "cost gauge on /metrics")
        assert float(next(ln for ln in usd if ln.startswith("mlplat_cost_usd{"))
                     .rsplit(" ", 1)[1]) == pytest.approx(2 * 120 * training)
        out = session_home / "digest-it"
        printed = run_job("jobs/cost_digest.py", capsys, "--no-collect", "--all-time",
                          "--out", str(out), "--actor-name", name)
        assert CostReport.model_validate(printed).by_team == pytest.approx(report.by_team)
        assert "| search | ranker |" in (out / "cost-digest.md").read_text()
        # Usage is in the store: a restarted meter still has it.
        ray.kill(meter, no_restart=False)
        again = poll(lambda: ray.get(meter.report.remote(collect=False), timeout=10),
                     lambda r: True, 90, "cost meter restarted")
        assert again.by_team == pytest.approx(report.by_team)
    finally:
        ray.kill(meter, no_restart=True)
