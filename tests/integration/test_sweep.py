"""A sweep under a small team quota, through the job queue, next to serving and another team.

One team (risk, quota 2 training CPUs / 2 concurrent trials in a copy of platform.yaml) runs a
Tune sweep submitted through the queue. While it runs: (a) a tiny Serve deployment on the
serving pool keeps answering; (b) a second risk job waits with a quota reason while a search
job is admitted and starts training; (c) sampled at up to 10 Hz, risk's sweep never holds more
CPUs on the training pool than its quota. Afterwards: every trial is an MLflow child run of
the sweep's run, the best trial is a registered version, and the finished sweep's quota goes
to the waiting risk job.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplat.config import load_config
from mlplat.training._loop import read_step_log
from tests.unit.training.synthetic import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUOTA_CPU = 2
TRIALS = 2


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class Sampler(threading.Thread):
    """CPUs held by one Ray job's placement groups (Tune reserves one per trial)."""

    def __init__(self, client: Any, submission_id: str, hz: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.client, self.submission_id, self.period = client, submission_id, 1.0 / hz
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from ray.util.state import list_placement_groups

        job_hex = None
        while not self.stop.is_set():
            t = time.monotonic()
            if job_hex is None:
                job_hex = self.client.get_job_info(self.submission_id).job_id
            if job_hex:
                groups = list_placement_groups(
                    filters=[("creator_job_id", "=", job_hex), ("state", "=", "CREATED")],
                    detail=True, limit=1000,
                )
                self.samples.append(sum(
                    float(b.get("unit_resources", {}).get("CPU", 0))
                    for g in groups for b in (g.bundles or [])
                ))
            self.stop.wait(max(0.0, self.period - (time.monotonic() - t)))


class Pinger(threading.Thread):
    def __init__(self, handle: Any) -> None:
        super().__init__(daemon=True)
        self.handle = handle
        self.ok = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                assert self.handle.remote(7).result(timeout_s=10) == 14
                self.ok += 1
            except Exception as exc:
                self.errors.append(repr(exc)[:200])
            self.stop.wait(0.2)


def test_sweep_stays_in_quota_beside_serving_and_other_teams(
    ray_cluster: str, ray_dashboard_url: str, session_home: Path, repo_root: Path,
    tmp_path: Path,
) -> None:
    import ray
    from ray import serve
    from ray.job_submission import JobSubmissionClient

    from mlplat.apps import load_app
    from mlplat.cluster import pool_selector
    from mlplat.experiment import list_versions, tracking_uri
    from mlplat.scheduling import JobRequest, enqueue, job_queue

    raw = yaml.safe_load((repo_root / "platform.yaml").read_text())
    for team in raw["teams"].values():
        team["quotas"]["training-spot"].update(cpu=QUOTA_CPU, max_concurrent_trials=TRIALS)
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "platform.yaml")
    app = load_app("fraud", load_config(repo_root / "platform.yaml"))
    dataset = write_dataset(session_home / "datasets" / "fraud-sweep", app.features, 1200)
    uid = uuid.uuid4().hex[:6]
    queue_name = f"mlplat-job-queue-it-{uid}"
    client = JobSubmissionClient(ray_dashboard_url)

    # (a) a tiny Serve app on the serving pool, called through its handle the whole time.
    @serve.deployment(ray_actor_options={"num_cpus": 0.1,
                                         "label_selector": pool_selector("serving-ondemand")})
    class Doubler:
        def __call__(self, x: int) -> int:
            return 2 * x

    serve.start(proxy_location="HeadOnly",
                http_options={"host": "127.0.0.1", "port": cfg.local_cluster.serve_http_port})
    serve_app = f"it-sweep-doubler-{uid}"
    handle = serve.run(Doubler.bind(), name=serve_app, route_prefix=None)
    pinger = Pinger(handle)
    pinger.start()
    queue = job_queue(cfg, name=queue_name, dashboard_url=ray_dashboard_url)
    sampler = None
    try:
        sweep_name = f"it-sweep-{uid}"
        sweep_entry = enqueue(cfg, JobRequest(
            team="risk", script="jobs/sweep.py", model="fraud", priority="batch-low",
            pool="training-spot", cpus=QUOTA_CPU,
            args=["--app", "apps/fraud", "--dataset", str(dataset), "--team", "risk",
                  "--num-samples", "6", "--epochs", "3", "--min-step-s", "0.1",
                  "--name", sweep_name],
        ), name=queue_name, dashboard_url=ray_dashboard_url)
        assert sweep_entry.state == "RUNNING", sweep_entry
        sampler = Sampler(client, sweep_entry.ray_job_id)
        sampler.start()
        # (b) risk's next job must wait; search's job is admitted and starts at once.
        risk_backlog = enqueue(cfg, JobRequest(
            team="risk", script="jobs/train.py", model="fraud", priority="batch-high",
            pool="training-spot", cpus=2,
            args=["--app", "apps/fraud", "--dataset", str(dataset), "--set", "epochs=1"],
        ), name=queue_name, dashboard_url=ray_dashboard_url)
        assert risk_backlog.state == "QUEUED"
        assert "waiting for quota: team risk on training-spot" in risk_backlog.reason
        _wait_for(lambda: sampler.samples and max(sampler.samples) > 0, 180,
                  "the sweep's first trial")
        other_run = f"it-sweep-other-{uid}"
        other = enqueue(cfg, JobRequest(
            team="search", script="jobs/train.py", model="fraud", priority="batch-low",
            pool="training-spot", cpus=2,
            args=["--app", "apps/fraud", "--dataset", str(dataset), "--run-name", other_run,
                  "--set", "epochs=1"],
        ), name=queue_name, dashboard_url=ray_dashboard_url)
        assert other.state == "RUNNING", other  # admitted despite risk's backlog
        _wait_for(lambda: client.get_job_status(other.ray_job_id).value == "RUNNING", 120,
                  "search's job to start")
        sweep_running = client.get_job_status(sweep_entry.ray_job_id).value == "RUNNING"

        # It gets its training workers too (whether or not the sweep is still going by then).
        _wait_for(lambda: read_step_log(session_home / "checkpoints" / other_run)["steps"],
                  480, "search's job to train its first step")
        done = _wait_for(
            lambda: (e := ray.get(queue.get.remote(sweep_entry.id))).state in
            {"SUCCEEDED", "FAILED", "STOPPED"} and e, 420, "the sweep to finish")
        logs = client.get_job_logs(sweep_entry.ray_job_id)
        assert done.state == "SUCCEEDED", logs[-4000:]
        sampler.stop.set()
        sampler.join(10)
        # The finished sweep released risk's quota: the waiting job is admitted now.
        admitted = _wait_for(
            lambda: (e := ray.get(queue.get.remote(risk_backlog.id))).state not in
            {"QUEUED", "STARTING"} and e, 60, "risk's waiting job to be admitted")
        assert admitted.ray_job_id == risk_backlog.id
        if admitted.state == "RUNNING":
            client.stop_job(admitted.ray_job_id)
    finally:
        if sampler is not None:
            sampler.stop.set()
        pinger.stop.set()
        pinger.join(10)
        serve.delete(serve_app)
        ray.kill(queue)

    from mlplat.jobs import last_json_line

    result = last_json_line(logs)
    # (c) never above the quota, and sampled densely enough to mean something.
    hz = len(sampler.samples) / max(1e-9, result["timings_s"]["total"])
    print(f"sweep: {len(sampler.samples)} samples (~{hz:.1f}/s), max held "
          f"{max(sampler.samples)} CPUs; serve ok={pinger.ok} errors={len(pinger.errors)}; "
          f"timings {result['timings_s']}")
    assert max(sampler.samples) <= QUOTA_CPU
    assert sweep_running, "the sweep had finished before search's job started"
    assert result["max_concurrent_trials"] == min(TRIALS, QUOTA_CPU)
    assert pinger.errors == [] and pinger.ok >= 10

    import mlflow

    mlflow_client = mlflow.MlflowClient(tracking_uri(cfg))
    assert result["trials"] == 6 and len(result["child_run_ids"]) == 6
    for run_id in result["child_run_ids"]:
        tags = mlflow_client.get_run(run_id).data.tags
        assert tags["mlflow.parentRunId"] == result["parent_run_id"]
    best = mlflow_client.get_run(result["run_id"]).data.tags
    assert best["mlflow.parentRunId"] == result["parent_run_id"]
    versions = {v["version"] for v in list_versions(cfg, "fraud")}
    assert result["version"] in versions
    assert result["best_metrics"]["val_auc"] > 0.5
