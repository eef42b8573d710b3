"""Cost metering against a known workload: a submitted Ray job whose tasks hold known resources
on the training pool for known durations is charged within 5 % of the expected figure, to the
team and model in its submission metadata, from what Ray's state API saw."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlplat.config import load_config
from tests.services import poll

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CPUS, MEMORY_GIB, DURATIONS_S = 0.5, 0.25, (3.0, 5.0)

WORKLOAD = f'''
import json, time
import ray

ray.init()

@ray.remote(num_cpus={CPUS}, memory=int({MEMORY_GIB} * 1024 ** 3),
            label_selector={{"pool": "training-spot"}})
def work(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()

print(json.dumps(ray.get([work.remote(s) for s in {list(DURATIONS_S)}])))
'''




def test_known_workload_is_charged_within_5_percent(ray_cluster: str, ray_dashboard_url: str,
                                                    tmp_path: Path) -> None:
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    from mlplat.governance import get_cost_meter

    cfg = load_config(REPO / "platform.yaml")
    model = f"cost-it{os.getpid()}"
    (tmp_path / "workload.py").write_text(WORKLOAD)
    client = JobSubmissionClient(ray_dashboard_url)
    job_id = client.submit_job(
        entrypoint="python workload.py", runtime_env={"working_dir": str(tmp_path)},
        metadata={"team": "search", "model": model, "pool": "training-spot", "cpus": "1"})
    meter = get_cost_meter(cfg, name=f"mlplat-cost-known-{os.getpid()}", metrics_port=0,
                           sample=False, dashboard_url=ray_dashboard_url)
    try:
        status = poll(lambda: client.get_job_status(job_id),
                      lambda s: s in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED},
                      240, "the workload job to finish")
        logs = client.get_job_logs(job_id)
        assert status == JobStatus.SUCCEEDED, logs[-2000:]
        spans = json.loads([ln for ln in logs.splitlines() if ln.startswith("[[")][-1])
        assert sum(end - start for start, end in spans) == pytest.approx(sum(DURATIONS_S),
                                                                         rel=0.05)
        # How long each task held its resources, as Ray recorded it (RUNNING → FINISHED). On a
        # loaded 2-core box that is the sleep plus seconds of worker overhead, so the expected
        # figure is built from these durations and the known resources, read independently of
        # the meter straight from the state API.
        from ray.util.state import list_tasks

        ray_job = next(j.job_id for j in client.list_jobs() if j.submission_id == job_id)
        tasks = poll(lambda: [t for t in list_tasks(
            address=ray_dashboard_url, filters=[("job_id", "=", ray_job)], detail=True,
            raise_on_missing_output=False) if t.func_or_class_name.endswith("work")
            and t.end_time_ms], lambda ts: len(ts) == len(DURATIONS_S), 60, "the tasks' events")
        held_s = sum((t.end_time_ms - t.start_time_ms) / 1000 for t in tasks)
        assert held_s >= sum(DURATIONS_S)
        pool = cfg.pools["training-spot"]  # dominant share of a node × node price
        expected = (pool.price_usd_per_hour / 3600 * held_s
                    * max(CPUS / pool.cpus_per_node, MEMORY_GIB / pool.memory_gib_per_node))

        def sampled() -> Any:
            ray.get(meter.sample.remote(), timeout=120)
            return ray.get(meter.report.remote(collect=False), timeout=60)

        # Task events reach the state API a little after the task ends: sample until both show.
        report = poll(sampled, lambda r: r.resource_seconds.get(f"search/{model}", {})
                      .get("cpu", 0) >= CPUS * held_s * 0.95, 120,
                      "both tasks in the cost report")
        attributed = report.by_team_model["search"][model]
        print(f"known workload: expected ${expected:.8f}, attributed ${attributed:.8f} "
              f"({attributed / expected - 1:+.2%})")
        assert attributed == pytest.approx(expected, rel=0.05)
        # Charged from the measured tasks, on the spot pool, not from the job's declared cpus=1.
        assert report.resource_seconds[f"search/{model}"]["memory_gib"] == pytest.approx(
            MEMORY_GIB * held_s, rel=0.05)
        ours = [r for r in report.records if r.model == model]
        assert {r.pool for r in ours} == {"training-spot"} and len(ours) == len(DURATIONS_S)
        assert report.by_capacity.get("spot", 0) >= attributed
    finally:
        ray.kill(meter, no_restart=True)
