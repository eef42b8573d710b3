"""`mlplat cluster up` starts a real multi-pool cluster; `down` stops exactly that one."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import ray
import yaml

from mlplat.cluster import cluster_down, cluster_status, cluster_up, pool_resource
from mlplat.config import load_config
from mlplat.jobs import submit_with_retry

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.slow
def test_cluster_up_labels_pools_and_down_stops_only_its_own(
    ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load((REPO / "platform.yaml").read_text())
    raw["pools"]["training-spot"]["local"]["nodes"] = 1
    raw["pools"]["serving-ondemand"]["local"]["nodes"] = 0
    raw["local_cluster"].update(gcs_port=_free_port(), dashboard_port=_free_port(),
                                serve_http_port=_free_port())
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    home = tmp_path / "home"
    monkeypatch.setenv("MLPLAT_HOME", str(home))
    cfg = load_config(path)

    state = cluster_up(cfg)
    try:
        from ray.job_submission import JobStatus, JobSubmissionClient
        from ray.util.state import list_nodes

        nodes = list_nodes(address=state.dashboard_url, detail=True,
                           filters=[("state", "=", "ALIVE")])
        assert sorted(n.labels["pool"] for n in nodes) == ["cpu", "training-spot"]
        train = next(n for n in nodes if n.labels["pool"] == "training-spot")
        assert train.resources_total[pool_resource("training-spot")] == 2
        assert cluster_up(cfg).session_dir == state.session_dir  # idempotent

        # A plain `ray job submit` runs mlplat's interpreter and writes to the same store.
        client = JobSubmissionClient(state.dashboard_url)
        job = submit_with_retry(client, entrypoint=(
            "python -c \"import mlplat, os; print('HOME=' + os.environ['MLPLAT_HOME'])\""))
        deadline = time.monotonic() + 120
        while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED}:
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(0.5)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)
        assert f"HOME={home}" in client.get_job_logs(job)
    finally:
        stopped = cluster_down(cfg)
    assert stopped >= 4  # at least GCS, two raylets, dashboard
    assert cluster_status(cfg) is None
    # The shared test cluster, started separately, is untouched.
    assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60) == 42
