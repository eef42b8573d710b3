"""Fault drills for DDP training: a killed worker, a drained spot node, a stopped job.

Each drill checks what a user relies on: the run completes; it resumed from a checkpoint
(first step after the resume > 0); the checkpointed per-step history is exactly one entry per
planned step; the work thrown away is at most one checkpoint interval (the step log records
every step rank 0 really executed, replays included); and the per-step losses and final
validation metrics match an uninterrupted run with the same seed, computed in-process
(tests/unit/training/ddp_reference.py).

The runs are tiny (a 1,600-row dataset, 40 steps) and paced with ``min_step_s`` so there is
time to interrupt them.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplat.apps import AppConfig, load_app
from mlplat.config import PlatformConfig, load_config
from mlplat.training import TrainResult, load_model_builder, train
from mlplat.training._dataset import load_dataset, prepare_split
from mlplat.training._loop import read_step_log
from tests.unit.training.ddp_reference import reference_run
from tests.unit.training.synthetic import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 10  # checkpoint interval (steps)
N_ROWS = 1600  # → 1,280 training rows, 640 per rank, 20 batches of 32 per epoch
OVERRIDES: dict[str, Any] = {
    "epochs": 2,
    "checkpoint_every_steps": K,
    "batch_size": 32,
    "hidden_units": 8,
    "num_workers": 2,
    "cpus_per_worker": 1,
}
PLANNED_STEPS = 40
MIN_STEP_S = 0.5  # Ray Train registers a checkpoint at its next 2 s poll: ~4 steps later
"""The drills interrupt a run within K - 2 steps of a registration: 4 s of registration lag at
this pace (0.3 s left 2.4 s, and a loaded box lagged more: the stop drill missed every window)."""
LOSS_RTOL, LOSS_ATOL = 1e-3, 1e-4
"""Resumed vs uninterrupted: the same computation up to float summation order (gloo vs
in-process sums, thread counts); anything beyond this tolerance is a resume bug."""


def _thread(fn: Callable[[], TrainResult]) -> Future[TrainResult]:
    fut: Future[TrainResult] = Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return fut


def _wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _wait_quiet(run_dir: Path, quiet_s: float, timeout_s: float) -> None:
    """Until no worker has logged a step for ``quiet_s``."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = len(_executed(run_dir))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)
    raise AssertionError(f"workers still stepping after {timeout_s:.0f}s")


def _registered_step(run_dir: Path) -> int:
    """The step of the newest checkpoint Ray Train's controller has *registered* (0: none).

    A checkpoint folder that is written but not yet registered is not one Ray restores from;
    registration trails the worker's ``report`` by the controller's poll (seconds on a loaded
    box), so the drills interrupt a run only right after a registration.
    """
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return int(latest.get("metrics", {}).get("step", 0))


def _wait_to_interrupt(run_dir: Path, timeout_s: float) -> int:
    """Wait until a checkpoint at step >= K is registered and the run is at most K - 2 steps
    past it (mid-interval, with margin for the steps taken while we act); returns that step.

    This is the drill's definition of "lost work <= one checkpoint interval": measured from the
    newest checkpoint Ray knows about, which is what a real preemption or stop resumes from.
    """
    def ready() -> int:
        registered = _registered_step(run_dir)
        executed = max((s["step"] for s in _executed(run_dir)), default=0)
        ok = registered >= K and registered + 2 <= executed <= registered + K - 2
        return executed if ok else 0

    return int(_wait_for(ready, timeout_s, "a freshly registered checkpoint mid-interval"))


def _executed(run_dir: Path) -> list[dict[str, Any]]:
    return read_step_log(run_dir)["steps"]


def _attempts(steps: list[dict[str, Any]]) -> list[list[int]]:
    """Executed steps grouped by attempt (one worker-group process), in execution order."""
    order: list[str] = []
    by_attempt: dict[str, list[int]] = {}
    for rec in steps:
        if rec["attempt"] not in by_attempt:
            order.append(rec["attempt"])
            by_attempt[rec["attempt"]] = []
        by_attempt[rec["attempt"]].append(int(rec["step"]))
    return [by_attempt[a] for a in order]


@pytest.fixture(scope="module")
def env(
    ray_cluster: str, session_home: Path, repo_root: Path
) -> tuple[PlatformConfig, AppConfig, Path, dict[str, Any]]:
    cfg = load_config(repo_root / "platform.yaml")
    app = load_app("fraud", cfg)
    dataset = write_dataset(session_home / "datasets" / "fraud-faults", app.features, N_ROWS)
    tcfg = app.training.model_copy(update=OVERRIDES)
    split = prepare_split(
        load_dataset(str(dataset), app.features), tcfg.validation_fraction, tcfg.seed
    )
    losses, metrics = reference_run(
        load_model_builder(app),
        split.x_train,
        split.y_train,
        split.x_val,
        split.y_val,
        world=tcfg.num_workers,
        seed=tcfg.seed,
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        learning_rate=tcfg.learning_rate,
        hidden_units=tcfg.hidden_units,
    )
    assert len(losses) == PLANNED_STEPS
    return cfg, app, dataset, {"losses": losses, "metrics": metrics}


def _check_recovered(
    result: TrainResult, run_dir: Path, reference: dict[str, Any], max_lost: float
) -> dict[str, Any]:
    """The common assertions; returns the numbers for the drill's own checks."""
    # One entry per planned step in the checkpointed history: no gaps, no repeats.
    assert [int(s) for s, _ in result.step_losses] == list(range(1, PLANNED_STEPS + 1))
    attempts = _attempts(_executed(run_dir))
    assert len(attempts) >= 2, f"the run was never interrupted: {attempts}"
    resumed_at = attempts[1][0] - 1
    assert resumed_at > 0, f"restarted from scratch, not from a checkpoint: {attempts}"
    # Each attempt picks up right after a checkpoint its predecessor wrote; what the
    # predecessor executed beyond that point is lost work, replayed.
    lost = [max(prev) - (nxt[0] - 1) for prev, nxt in itertools.pairwise(attempts)]
    assert all(0 <= n <= max_lost for n in lost), (lost, max_lost)
    assert sorted({s for a in attempts for s in a}) == list(range(1, PLANNED_STEPS + 1))
    got = np.array([loss for _, loss in result.step_losses])
    want = np.array([loss for _, loss in reference["losses"]])
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, atol=LOSS_ATOL)
    final = result.history[-1]
    assert final["step"] == PLANNED_STEPS
    assert final["val_loss"] == pytest.approx(reference["metrics"]["val_loss"], rel=1e-3)
    assert final["val_auc"] == pytest.approx(reference["metrics"]["val_auc"], abs=2e-3)
    return {"attempts": attempts, "resumed_at": resumed_at, "lost": lost}


def test_killed_worker_resumes_from_checkpoint(env, session_home: Path) -> None:
    cfg, app, dataset, reference = env
    run = f"it-fault-kill-{uuid.uuid4().hex[:6]}"
    run_dir = session_home / "checkpoints" / run
    fut = _thread(
        lambda: train(cfg, app, str(dataset), run_name=run, overrides=OVERRIDES,
                      min_step_s=MIN_STEP_S)
    )
    # Mid-interval, right after a checkpoint was registered: kill rank 1's process outright.
    _wait_to_interrupt(run_dir, 120)
    starts = read_step_log(run_dir)["starts"]
    victim = next(s for s in starts if s["rank"] == 1)
    killed_at = max(s["step"] for s in _executed(run_dir))
    os.kill(int(victim["pid"]), signal.SIGKILL)
    result = fut.result(timeout=240)
    numbers = _check_recovered(result, run_dir, reference, max_lost=K)
    assert result.worker_restarts >= 1
    assert numbers["resumed_at"] <= killed_at
    print(f"kill drill: killed at step {killed_at}, {numbers}")


# --------------------------------------------------------------------------- drain


class DrillNodes:
    """Two extra training-spot nodes only this test's run may use (an extra label), so the
    drill drains and removes capacity nobody else holds — on a private or a shared cluster."""

    def __init__(self, gcs_address: str, count: int = 2) -> None:
        import ray._private.node
        import ray._private.parameter

        from mlplat.cluster import node_specs, pool_resource, pool_selector

        spec = next(s for s in node_specs(load_config()) if s.pool == "training-spot")
        self.label = {"mlplat-drill": uuid.uuid4().hex[:8]}
        self.nodes: list[Any] = []
        for i in range(count):
            params = ray._private.parameter.RayParams(
                gcs_address=gcs_address,
                num_cpus=int(spec.num_cpus),
                num_gpus=0,
                resources={pool_resource("training-spot"): spec.num_cpus},
                labels={**pool_selector("training-spot"), **self.label},
                object_store_memory=spec.object_store_mib * 1024 * 1024,
                temp_dir=f"/tmp/mlplat-ray/d{os.getpid()}n{i}",
                include_log_monitor=False,
                node_manager_port=0,
                min_worker_port=0,
                max_worker_port=0,
                dashboard_agent_listen_port=None,
            )
            self.nodes.append(
                ray._private.node.Node(params, head=False, shutdown_at_exit=True,
                                       spawn_reaper=True)
            )
        ids = {n.node_id for n in self.nodes}
        _wait_for(lambda: ids <= _alive_node_ids(), 60, "drill nodes to register")

    def node(self, node_id: str) -> Any:
        return next(n for n in self.nodes if n.node_id == node_id)

    def remove(self, node: Any) -> None:
        """The reclaim: every process of the node dies at once, as when a spot VM goes."""
        if node in self.nodes:
            node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
            self.nodes.remove(node)

    def close(self) -> None:
        for node in list(self.nodes):
            self.remove(node)


def _alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


@pytest.fixture()
def drill_nodes(ray_cluster: str) -> Iterator[DrillNodes]:
    if os.environ.get("MLPLAT_TEST_RAY_ADDRESS") and not os.environ.get(
        "MLPLAT_TEST_ALLOW_EXTRA_NODES"
    ):
        pytest.skip(
            "the drain drill adds (and removes) two nodes to the cluster; on an external "
            "cluster (MLPLAT_TEST_RAY_ADDRESS) that needs MLPLAT_TEST_ALLOW_EXTRA_NODES=1"
        )
    nodes = DrillNodes(ray_cluster)
    try:
        yield nodes
    finally:
        nodes.close()


DRAIN_DEADLINE_S = 10
DRAIN_OVERRIDES = {**OVERRIDES, "checkpoint_every_steps": PLANNED_STEPS + 1}
"""No periodic checkpoint at all in the drain drill (only epoch ends): every step the deadline
allows after the drain (10 s / 0.3 s ≈ 33) could otherwise hold one, and a periodic checkpoint
must never pass for a just-in-time one."""


def test_drained_node_checkpoints_just_in_time(env, session_home: Path, drill_nodes, ray_cluster):
    cfg, app, dataset, reference = env
    run = f"it-fault-drain-{uuid.uuid4().hex[:6]}"
    run_dir = session_home / "checkpoints" / run
    fut = _thread(
        lambda: train(cfg, app, str(dataset), run_name=run, overrides=DRAIN_OVERRIDES,
                      min_step_s=MIN_STEP_S, node_labels=drill_nodes.label)
    )
    _wait_for(lambda: any(s["step"] >= 3 for s in _executed(run_dir)), 120, "step 3")
    node_id = next(s for s in read_step_log(run_dir)["starts"] if s["rank"] == 0)["node_id"]
    drained_at = max(s["step"] for s in _executed(run_dir))
    drain_t = time.time()
    subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "drain-node", f"--address={ray_cluster}",
         f"--node-id={node_id}", "--reason=DRAIN_NODE_REASON_PREEMPTION",
         "--reason-message=spot", f"--deadline-remaining-seconds={DRAIN_DEADLINE_S}"],
        check=True, capture_output=True, timeout=60,
    )
    t_drain = time.monotonic()
    # The reclaim itself, once the deadline has passed (the run has moved off by then).
    _wait_for(lambda: time.monotonic() > t_drain + DRAIN_DEADLINE_S, DRAIN_DEADLINE_S + 5,
              "the deadline")
    drill_nodes.remove(drill_nodes.node(node_id))
    result = fut.result(timeout=240)
    log = read_step_log(run_dir)
    timeline = {
        "drained_at_step": drained_at,
        "drain_t": round(drain_t, 2),
        "deadline_t": round(drain_t + DRAIN_DEADLINE_S, 2),
        "jit_checkpoints": log["preemptions"],
        "attempts": _attempts(log["steps"]),
    }
    # One drain notice, seen after the drain, and its just-in-time checkpoint saved before the
    # node's deadline (the timeline says which of these did not happen).
    notices = [e for e in log["preemptions"] if e["event"] == "notice"]
    saved = [e for e in log["preemptions"] if e["event"] == "saved"]
    assert len(notices) == 1, f"the drain notice never reached the loop: {timeline}"
    assert len(saved) == 1, f"no just-in-time checkpoint after the notice: {timeline}"
    jit = {**saved[0], "notice_t": notices[0]["t"], "deadline_t": notices[0]["deadline_t"]}
    assert jit["step"] >= drained_at, timeline
    assert drain_t - 1 <= jit["notice_t"] <= jit["t"], timeline
    assert jit["deadline_t"] is not None and jit["t"] <= jit["deadline_t"], timeline
    # The run resumed from exactly that checkpoint, and nothing trained after it was lost
    # (the workers stopped stepping once it was saved).
    numbers = _check_recovered(result, run_dir, reference, max_lost=0)
    assert numbers["resumed_at"] == jit["step"], {**timeline, **numbers}
    later = [s for s in log["starts"] if s["step"] == numbers["resumed_at"]]
    assert later and all(s["node_id"] != node_id for s in later)  # it moved off the node
    checks = sorted(s["check_ms"] for s in log["steps"] if s.get("check_ms") is not None)
    work = sorted(s["step_ms"] for s in log["steps"] if s.get("step_ms") is not None)
    cost = (f"preemption check per step: median {checks[len(checks) // 2]:.2f} ms, "
            f"p90 {checks[int(len(checks) * 0.9)]:.2f} ms; step before pacing: median "
            f"{work[len(work) // 2]:.2f} ms") if checks and work else "no check timings"
    print(f"drain drill: {timeline}, {numbers}; {cost}")


# --------------------------------------------------------------------------- job stop


def test_stopped_job_resubmitted_resumes(env, session_home: Path, ray_dashboard_url: str):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from mlplat.jobs import submit_job

    cfg, _app, dataset, reference = env
    run = f"it-fault-stop-{uuid.uuid4().hex[:6]}"
    run_dir = session_home / "checkpoints" / run
    args = ["--app", "fraud", "--dataset", str(dataset), "--run-name", run,
            "--min-step-s", str(MIN_STEP_S)]
    args += [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    first = submit_job(cfg, "jobs/train.py", args, team="risk", model="fraud",
                       pool="training-spot", cpus=2, wait=False, address=ray_dashboard_url)
    client = JobSubmissionClient(ray_dashboard_url)
    _wait_to_interrupt(run_dir, 180)
    stopped_at = max(s["step"] for s in _executed(run_dir))  # when the stop was asked for
    client.stop_job(first.job_id)
    _wait_for(
        lambda: client.get_job_status(first.job_id) in {JobStatus.STOPPED, JobStatus.FAILED},
        60, "the job to stop",
    )
    # The driver goes first; its workers die with it a moment later (they may take a few more
    # steps nobody will keep). Resubmit once they are gone.
    _wait_quiet(run_dir, quiet_s=3.0, timeout_s=60)
    assert stopped_at < PLANNED_STEPS, "the job finished before it could be stopped"
    second = submit_job(cfg, "jobs/train.py", args, team="risk", model="fraud",
                        pool="training-spot", cpus=2, wait=True, timeout_s=300,
                        address=ray_dashboard_url)
    assert second.ok, second.logs[-3000:]
    assert 0 < second.result["resumed_from_step"] <= stopped_at
    assert stopped_at - second.result["resumed_from_step"] <= K
    # The newest checkpoint's per-step history: one entry per planned step, no gaps/repeats.
    kept = [json.loads(p.read_text()) for p in run_dir.glob("checkpoint_*/steps.json")]
    final = max(kept, key=len)
    assert [int(st) for st, _ in final] == list(range(1, PLANNED_STEPS + 1))
    np.testing.assert_allclose([loss for _, loss in final],
                               [loss for _, loss in reference["losses"]],
                               rtol=LOSS_RTOL, atol=LOSS_ATOL)
    steps = _attempts(_executed(run_dir))
    assert len(steps) == 2 and steps[1][0] == second.result["resumed_from_step"] + 1
    assert steps[0][0] == 1  # the first job started from scratch
    assert steps[1][-1] == PLANNED_STEPS
    from mlplat.experiment import list_versions

    versions = {v["version"]: v for v in list_versions(cfg, "fraud")}
    assert versions[second.result["version"]]["tags"]["run_id"] == second.result["run_id"]
    assert second.result["metrics"]["val_auc"] == pytest.approx(
        reference["metrics"]["val_auc"], abs=0.05)  # best kept checkpoint, not the last step
    print(f"stop drill: stopped at step {stopped_at}, attempts {steps}")
