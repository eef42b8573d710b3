"""The one session-scoped multi-pool Ray cluster shared by integration and e2e tests.

By default each pytest session builds an in-process ``ray.cluster_utils.Cluster`` with the
node pools from platform.yaml (see mlplat.cluster). Set MLPLAT_TEST_RAY_ADDRESS to the GCS
address of a running cluster (e.g. one from `mlplat cluster up`) to reuse it instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_DASHBOARD: dict[str, str] = {}


@pytest.fixture(scope="session")
def ray_cluster(session_home: Path, repo_root: Path) -> Iterator[str]:
    """Yields the GCS address of the shared cluster, with this process connected to it."""
    import ray

    from mlplat.config import load_config

    cfg = load_config(repo_root / "platform.yaml")
    address = os.environ.get("MLPLAT_TEST_RAY_ADDRESS")
    cluster = None
    # Ray processes inherit this environment: jobs' `python` must be this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if not address:
        from mlplat.cluster import start_test_cluster

        cluster = start_test_cluster(cfg)
        address = cluster.address
    context = ray.init(
        address=address,
        namespace="mlplat",
        runtime_env={"env_vars": {"MLPLAT_HOME": str(session_home)}},
        logging_level="ERROR",
    )
    _DASHBOARD["url"] = f"http://{context.dashboard_url}"
    try:
        yield address
    finally:
        if cluster is not None:  # never tear down Serve on a cluster someone else owns
            try:
                from ray import serve

                serve.shutdown()
            except Exception:
                pass
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
            from mlplat.cluster._local import _forget_address

            _forget_address(address)


@pytest.fixture(scope="session")
def ray_dashboard_url(ray_cluster: str) -> str:
    """Job API / dashboard URL of the shared cluster."""
    return _DASHBOARD["url"]


def run_repo_job(client: object, entrypoint: str, env: dict[str, str], metadata: dict[str, str],
                 timeout_s: float = 300) -> str:
    """Submit ``entrypoint`` with the repository as working_dir, wait for it to end, assert it
    SUCCEEDED (the log tail is the message otherwise) and return its logs."""
    import time

    from ray.job_submission import JobStatus

    from mlplat.jobs import WORKING_DIR_EXCLUDES, submit_with_retry

    repo = Path(__file__).resolve().parents[1]
    job = submit_with_retry(
        client, entrypoint=entrypoint, metadata=metadata,
        runtime_env={"working_dir": str(repo), "excludes": WORKING_DIR_EXCLUDES, "env_vars": env},
    )
    ended = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    deadline = time.monotonic() + timeout_s
    while (status := client.get_job_status(job)) not in ended:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"{entrypoint!r} did not end in {timeout_s:.0f} s"
        time.sleep(1)
    logs: str = client.get_job_logs(job)  # type: ignore[attr-defined]
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    return logs
