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
NODE_TMP = "/tmp/mlplat-ray"


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
        # Ray's fixed default (52365) can be bound only once per machine: with several nodes
        # (or clusters) on one host the others would run without a job/metrics agent.
        f"--dashboard-agent-listen-port={_free_port()}",
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
    state = ClusterState(
        gcs_address=gcs,
        dashboard_url=f"http://127.0.0.1:{lc.dashboard_port}",
        serve_url=f"http://127.0.0.1:{lc.serve_http_port}",
        session_dir=_session_dir_of_gcs(lc.gcs_port),
        nodes=[asdict(s) for s in specs],
        started_at=time.time(),
    )
    # Recorded before the workers start, so a failure below can still be cleaned up.
    _state_file(cfg).write_text(json.dumps(asdict(state), indent=2))
    try:
        for i, spec in enumerate(specs[1:], start=1):
            # Each node gets its own temp dir, as separate hosts would: runtime-env agents
            # sharing one runtime_resources folder delete each other's unpacked working dirs
            # (a `ray job submit --working-dir .` job then loses its cwd mid-run).
            temp_dir = f"{NODE_TMP}/n{i}"  # short: Unix socket paths max out at 107 bytes
            _run(cfg, [_ray_bin(), "start", f"--address={gcs}", "--node-ip-address=127.0.0.1",
                       f"--temp-dir={temp_dir}", *_start_args(spec)])
        _wait_for_nodes(state.dashboard_url, len(specs), timeout_s)
    except BaseException:
        cluster_down(cfg)
        raise
    return state


def _session_dir_of_gcs(port: int) -> str:
    """The session folder of the GCS listening on ``port`` (not `session_latest`, which any
    other Ray start on this machine may move)."""
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if f"--gcs_server_port={port}" in args:
            for arg in args:
                if arg.startswith("--session-dir="):
                    return arg.split("=", 1)[1]
    raise InfraError(f"`ray start --head` returned but no GCS is listening on port {port}.")


def _wait_for_nodes(dashboard_url: str, expected: int, timeout_s: float) -> None:
    # The state API talks to the dashboard over HTTP, so this works from a process that is
    # already connected to another cluster (ray.init would refuse a second connection).
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout_s
    alive, last_error = 0, ""
    while time.monotonic() < deadline:
        try:
            nodes = list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")])
            alive = len(nodes)
            if alive >= expected:
                return
        except Exception as exc:  # dashboard still starting: connection refused / 5xx
            last_error = str(exc)
        time.sleep(0.5)
    raise InfraError(
        f"only {alive} of {expected} Ray nodes registered within {timeout_s:.0f}s {last_error}"
    )


def _session_pids(session_dir: str, gcs_port: str | None = None) -> list[int]:
    """PIDs of one Ray session: processes naming its folder, the client server bound to its
    GCS port (its command line names only the address), and all their children (workers and
    agents rename themselves to ``ray::…`` and name nothing)."""
    roots: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.info["pid"] == os.getpid():
            continue
        ours = os.path.basename(session_dir) in cmd or (
            gcs_port is not None and "ray.util.client.server" in cmd
            and f":{gcs_port} " in f"{cmd} "
        )
        if ours:
            roots.append(proc)
    pids = {p.pid for p in roots}
    for proc in roots:
        try:
            pids.update(c.pid for c in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    pids.discard(os.getpid())
    return sorted(pids)


def cluster_down(cfg: PlatformConfig, timeout_s: float = 30.0) -> int:
    """Stop the processes of the cluster `cluster up` started; returns how many were stopped.

    Only processes that belong to the recorded Ray session are signalled, so another Ray
    cluster on the same machine (a test cluster, a colleague's) is left alone.
    """
    path = _state_file(cfg)
    if not path.exists():
        return 0
    state = ClusterState(**json.loads(path.read_text()))
    pids = _session_pids(state.session_dir, state.gcs_address.rsplit(":", 1)[-1])
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
    # Ray writes the node's resolved IP there, not necessarily the host we dialled: match the port.
    marker = Path(RAY_TMP) / "ray_current_cluster"
    port = gcs_address.rsplit(":", 1)[-1]
    if marker.exists() and marker.read_text().strip().endswith(f":{port}"):
        marker.unlink(missing_ok=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
            # Never the configured port: a cluster from `mlplat cluster up` may hold it.
            "dashboard_port": _free_port(),
            # Nor Ray's fixed agent port (52365): any other Ray on this host (a `ray.init()`
            # in a notebook or bench) may hold it, and the head then runs without a job agent
            # ("No available agent to submit job" on every submission).
            "dashboard_agent_listen_port": _free_port(),
        },
    )
    for i, spec in enumerate(specs[1:], start=1):
        cluster.add_node(
            # One temp dir per node, as in cluster_up (see there for why).
            temp_dir=f"{NODE_TMP}/t{os.getpid()}n{i}",
            num_cpus=spec.num_cpus,
            num_gpus=0,
            resources=spec.resources,
            labels=spec.labels,
            object_store_memory=spec.object_store_mib * 1024 * 1024,
        )
    cluster.wait_for_nodes()
    return cluster
