from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from mlplat.config import POOL_LABEL, PlatformConfig
from mlplat.errors import InfraError, UserError

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

RAY_TMP = "/tmp/ray"


def pool_resource(pool: str) -> str:
    """Custom resource name every node of ``pool`` advertises (one unit per logical CPU)."""
    return f"{POOL_LABEL}:{pool}"


def pool_selector(pool: str) -> dict[str, str]:
    """Ray label selector that places actors / Train workers / Serve replicas on ``pool``."""
    return {POOL_LABEL: pool}


@dataclass(frozen=True)
class NodeSpec:
    pool: str
    num_cpus: float
    object_store_mib: int
    is_head: bool = False

    @property
    def labels(self) -> dict[str, str]:
        return pool_selector(self.pool)

    @property
    def resources(self) -> dict[str, float]:
        return {pool_resource(self.pool): self.num_cpus}


def node_specs(cfg: PlatformConfig) -> list[NodeSpec]:
    """The nodes the local cluster runs, head first, derived from ``pools.*.local``."""
    head_pool = cfg.local_cluster.head_pool
    specs: list[NodeSpec] = []
    for name, pool in cfg.pools.items():
        for i in range(pool.local.nodes):
            head = name == head_pool and i == 0
            specs.append(NodeSpec(name, pool.local.num_cpus, pool.local.object_store_mib, head))
    if not any(s.is_head for s in specs):
        raise UserError(
            f"local_cluster.head_pool is '{head_pool}' but pools.{head_pool}.local.nodes is 0; "
            "give that pool at least one local node."
        )
    specs.sort(key=lambda s: not s.is_head)
    return specs


@dataclass
class ClusterState:
    """What `cluster up` started, so `cluster down` stops exactly that and nothing else."""

    gcs_address: str
    dashboard_url: str
    serve_url: str
    session_dir: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0


def _state_file(cfg: PlatformConfig) -> Path:
    return cfg.local_path("cluster/state.json")


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _env(cfg: PlatformConfig) -> dict[str, str]:
    # Jobs run `python …`: make that the interpreter mlplat is installed in.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Every Ray process inherits this, so a job run from a copied working dir (or a plain
    # `ray job submit`) still writes datasets, checkpoints and registry entries to one place.
    env["MLPLAT_HOME"] = cfg.root()
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _start_args(spec: NodeSpec) -> list[str]:
    return [
        f"--num-cpus={spec.num_cpus:g}",
        "--num-gpus=0",
        f"--resources={json.dumps(spec.resources)}",
        f"--labels={POOL_LABEL}={spec.pool}",
        f"--object-store-memory={spec.object_store_mib * 1024 * 1024}",
        "--disable-usage-stats",
    ]


def _run(cfg: PlatformConfig, cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=_env(cfg), capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def cluster_status(cfg: PlatformConfig) -> ClusterState | None:
    """The running cluster `cluster up` recorded, or None if it is not running."""
    path = _state_file(cfg)
    if not path.exists():
        return None
    state = ClusterState(**json.loads(path.read_text()))
    if not _session_pids(state.session_dir):
        return None
    return state


def cluster_up(cfg: PlatformConfig, timeout_s: float = 120.0) -> ClusterState:
    """Start the local multi-pool cluster (idempotent: returns the running one if up).

    Raises:
        InfraError: a `ray start` failed or the nodes did not all register before the deadline.
    """
    running = cluster_status(cfg)
    if running is not None:
        return running
    lc = cfg.local_cluster
    specs = node_specs(cfg)
    head = specs[0]
    _run(
        cfg,
        [_ray_bin(), "start", "--head", f"--port={lc.gcs_port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={lc.dashboard_port}",
         "--include-dashboard=true", *_start_args(head)]
    )
    gcs = f"127.0.0.1:{lc.gcs_port}"
    for spec in specs[1:]:
        _run(cfg, [_ray_bin(), "start", f"--address={gcs}", "--node-ip-address=127.0.0.1",
              *_start_args(spec)])
    session_dir = os.path.realpath(os.path.join(RAY_TMP, "session_latest"))
    state = ClusterState(
        gcs_address=gcs,
        dashboard_url=f"http://127.0.0.1:{lc.dashboard_port}",
        serve_url=f"http://127.0.0.1:{lc.serve_http_port}",
        session_dir=session_dir,
        nodes=[asdict(s) for s in specs],
        started_at=time.time(),
    )
    _wait_for_nodes(gcs, len(specs), timeout_s)
    _state_file(cfg).write_text(json.dumps(asdict(state), indent=2))
    return state


def _wait_for_nodes(gcs: str, expected: int, timeout_s: float) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    ray.init(address=gcs, logging_level="ERROR", log_to_driver=False)
    try:
        while time.monotonic() < deadline:
            alive = [n for n in ray.nodes() if n["Alive"]]
            if len(alive) >= expected:
                return
            time.sleep(0.5)
        raise InfraError(f"only {len(alive)} of {expected} Ray nodes registered in {timeout_s}s")
    finally:
        ray.shutdown()


def _session_pids(session_dir: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if session_dir in cmd and proc.info["pid"] != os.getpid():
            pids.append(proc.info["pid"])
    return pids


def cluster_down(cfg: PlatformConfig, timeout_s: float = 30.0) -> int:
    """Stop the processes of the cluster `cluster up` started; returns how many were stopped.

    Only processes that belong to the recorded Ray session are signalled, so another Ray
    cluster on the same machine (a test cluster, a colleague's) is left alone.
    """
    path = _state_file(cfg)
    if not path.exists():
        return 0
    state = ClusterState(**json.loads(path.read_text()))
    pids = _session_pids(state.session_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if psutil.pid_exists(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _forget_address(state.gcs_address)
    path.unlink(missing_ok=True)
    return len(pids)


def _forget_address(gcs_address: str) -> None:
    # A bare ray.init() reads this file; leaving a dead address there breaks the next user.
    marker = Path(RAY_TMP) / "ray_current_cluster"
    if marker.exists() and gcs_address in marker.read_text():
        marker.unlink(missing_ok=True)


def start_test_cluster(cfg: PlatformConfig) -> Cluster:
    """An in-process ``ray.cluster_utils.Cluster`` of the same shape as `cluster up`."""
    from ray.cluster_utils import Cluster

    specs = node_specs(cfg)
    head = specs[0]
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": head.num_cpus,
            "num_gpus": 0,
            "resources": head.resources,
            "labels": head.labels,
            "object_store_memory": head.object_store_mib * 1024 * 1024,
            "include_dashboard": True,
        },
    )
    for spec in specs[1:]:
        cluster.add_node(
            num_cpus=spec.num_cpus,
            num_gpus=0,
            resources=spec.resources,
            labels=spec.labels,
            object_store_memory=spec.object_store_mib * 1024 * 1024,
        )
    cluster.wait_for_nodes()
    return cluster
