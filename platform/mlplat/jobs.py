"""Submitting platform jobs (`jobs/*.py`) to the Ray cluster with cost-meter metadata.

``mlplat jobs submit`` is ``ray job submit`` plus what the platform needs: the repository as the
working directory, the job's team/model/pool/cpus as submission metadata (the cost meter reads
it), the driver placed on the ``cpu`` pool, and a check that the team exists before any cluster
time is spent.

Example:
    >>> result = submit_job(cfg, "jobs/train.py", ["--app", "fraud"], team="risk", model="fraud",
    ...                     pool="training-spot", cpus=2)
    >>> result.status
    'SUCCEEDED'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplat.cluster import pool_selector
from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, UserError

WORKING_DIR_EXCLUDES = [".venv", ".mlplat", ".git", "**/__pycache__", "*.egg-info", ".hypothesis"]


@dataclass
class JobResult:
    job_id: str
    status: str
    logs: str
    result: dict[str, Any] = field(default_factory=dict)
    """The JSON object the job printed as its last stdout line, if any."""

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"


def dashboard_url(cfg: PlatformConfig, address: str | None = None) -> str:
    """The Ray dashboard (job API) URL: ``address``, else ``$RAY_ADDRESS`` if http, else the
    dashboard of the cluster this process is connected to, else the local cluster's port."""
    import os

    env = os.environ.get("RAY_ADDRESS", "")
    if address:
        return address
    if env.startswith("http"):
        return env
    try:
        import ray

        if ray.is_initialized():
            from ray._private.worker import get_dashboard_url

            url = get_dashboard_url()
            if url:
                return url if url.startswith("http") else f"http://{url}"
    except Exception:  # not connected / no dashboard: the configured local port below
        pass
    return f"http://127.0.0.1:{cfg.local_cluster.dashboard_port}"


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object (jobs print their result so)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def submit_job(
    cfg: PlatformConfig,
    script: str,
    args: list[str],
    *,
    team: str,
    model: str,
    pool: str = "cpu",
    cpus: float = 1.0,
    wait: bool = True,
    timeout_s: float = 900.0,
    address: str | None = None,
) -> JobResult:
    """Submit ``python <script> <args>`` as a Ray job and (by default) wait for it.

    Args:
        script: Path of the entrypoint relative to the repository root, e.g. ``jobs/train.py``.
        team: Team charged for the job; must exist in platform.yaml.
        model: Model the job works for (cost attribution and lineage).
        pool: Pool the job's heavy work runs on (its workers; the driver itself runs on ``cpu``).
        cpus: CPUs the job's workers hold on ``pool`` while running (cost attribution).
        wait: Block until the job ends, then return its status and logs.

    Raises:
        NotFoundError: unknown team or pool.
        UserError: the script does not exist.
        InfraError: the cluster cannot be reached, or the job did not end before timeout_s.
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    cfg.team(team)
    cfg.pool(pool)
    job_root(cfg, script)
    try:
        client = JobSubmissionClient(dashboard_url(cfg, address))
    except Exception as exc:  # the SDK raises bare ConnectionError/RuntimeError
        raise InfraError(
            f"Cannot reach the Ray cluster at {dashboard_url(cfg, address)}: {exc}. "
            "Start it with `mlplat cluster up`."
        ) from exc
    job_id = submit_with_retry(
        client, **ray_job_spec(cfg, script, args, team=team, model=model, pool=pool, cpus=cpus)
    )
    if not wait:
        return JobResult(job_id, "PENDING", "")
    deadline = time.monotonic() + timeout_s
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    status = client.get_job_status(job_id)
    while status not in terminal:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            raise InfraError(f"Job {job_id} ({script}) did not finish in {timeout_s:.0f}s; stopped.")
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    return JobResult(job_id, str(status.value), logs, last_json_line(logs))


def job_root(cfg: PlatformConfig, script: str) -> Path:
    """The folder shipped as the job's working directory: the one holding platform.yaml if
    ``script`` is there (the usual repository checkout), else the checkout mlplat runs from.

    Raises:
        UserError: ``script`` exists in neither.
    """
    source_repo = Path(__file__).resolve().parents[2]
    for root in (cfg.base_dir, source_repo):
        if (root / script).is_file():
            return root
    raise UserError(
        f"Job script '{script}' not found under {cfg.base_dir} or {source_repo}; "
        "jobs live in jobs/, e.g. jobs/train.py."
    )


def ray_job_spec(
    cfg: PlatformConfig,
    script: str,
    args: list[str],
    *,
    team: str,
    model: str,
    pool: str,
    cpus: float,
    extra_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``JobSubmissionClient.submit_job`` for a platform job.

    The repository is the working directory, MLPLAT_HOME points every process at one storage
    root, team/model/pool/cpus are submission metadata (the cost meter reads them), and the
    driver runs on the head's pool. Shared by direct submission and the job queue.

    Example:
        >>> ray_job_spec(cfg, "jobs/train.py", ["--app", "fraud"], team="risk",
        ...              model="fraud", pool="training-spot", cpus=2)["metadata"]["team"]
        'risk'
    """
    entrypoint = " ".join(["python", script, *(_quote(a) for a in args)])
    root = job_root(cfg, script)
    env_vars = {"MLPLAT_HOME": cfg.root()}
    if cfg.source_path is not None and cfg.source_path.parent != root:
        # A platform.yaml outside the shipped folder (e.g. a test's copy with small quotas):
        # point the job at it so it reads the same config as its submitter.
        env_vars["MLPLAT_CONFIG"] = str(cfg.source_path)
    return {
        "entrypoint": entrypoint,
        "runtime_env": {
            "working_dir": str(root),
            "excludes": WORKING_DIR_EXCLUDES,
            "env_vars": env_vars,
        },
        "metadata": {
            "team": team, "model": model, "pool": pool, "cpus": f"{cpus:g}",
            **(extra_metadata or {}),
        },
        "entrypoint_label_selector": pool_selector(cfg.local_cluster.head_pool),
    }


def submit_with_retry(client: Any, timeout_s: float = 60.0, **kwargs: Any) -> str:
    """``client.submit_job(**kwargs)``, retried while the head's job agent is still starting.

    Right after a cluster starts, the dashboard answers before its job agent registers and
    rejects submissions with "No available agent"; that is worth waiting out, nothing else is.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(client.submit_job(**kwargs))
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
