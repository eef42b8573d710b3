"""Training-plane benchmarks on a running local cluster (`mlplat cluster up`).

- launch latency: ``train()`` called → first optimizer step (from the run's step log), as a
  ratio of the design SLO (platform.yaml ``slos.training.launch_s``);
- resume latency: a worker SIGKILLed → first step of the restarted worker group, as a ratio
  of the SLO (``slos.training.preempted_resume_s``) and of the 30 s local goal;
- Tune overhead: N one-second trials with 2 running at once (2 CPUs) vs the theoretical
  minimum ceil(N / 2) s (goal ≤ 1.10×).

Example:
    .venv/bin/python bench/bench_training.py --tune-trials 200
    .venv/bin/python bench/bench_training.py --tune-trials 20 --skip-train
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCAL_RESUME_GOAL_S = 30.0


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def bench_launch_and_resume(cfg: Any) -> dict[str, float]:
    """One paced 2-worker run: launch latency, then kill rank 1 and time the resume."""
    sys.path.insert(0, str(REPO))
    from mlplat.apps import load_app
    from mlplat.training import read_step_log, train
    from tests.unit.training.synthetic import write_dataset

    app = load_app("fraud", cfg)
    home = Path(cfg.root())
    dataset = write_dataset(home / "datasets" / "bench-training", app.features, 1600)
    run = f"bench-launch-{uuid.uuid4().hex[:6]}"
    run_dir = home / "checkpoints" / run
    overrides = {"epochs": 2, "checkpoint_every_steps": 10, "batch_size": 32, "hidden_units": 8}
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = train(cfg, app, str(dataset), run_name=run, overrides=overrides,
                                  min_step_s=0.1)
        except BaseException as exc:
            out["error"] = exc

    t_submit = time.time()
    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    first = _wait_for(lambda: read_step_log(run_dir)["steps"], 300, "the first step")[0]
    launch_s = first["t"] - t_submit
    _wait_for(lambda: max(s["step"] for s in read_step_log(run_dir)["steps"]) >= 14, 120,
              "step 14")
    # Kill after Ray registered the step-10 checkpoint: a folder written but not yet collected
    # by the controller's poll is not one Ray restores from (as in the fault drills).
    _wait_for(lambda: _registered_step(run_dir) >= 10, 120, "the step-10 checkpoint")
    log = read_step_log(run_dir)
    # The worker group running now (an earlier one may have been restarted already).
    victim = [s for s in log["starts"] if s["rank"] == 1][-1]
    before = {s["attempt"] for s in log["steps"]}
    t_kill = time.time()
    os.kill(int(victim["pid"]), signal.SIGKILL)
    resumed = _wait_for(
        lambda: next((s for s in read_step_log(run_dir)["steps"] if s["attempt"] not in before),
                     None), 600, "the first step after the resume")
    resume_s = resumed["t"] - t_kill
    worker.join(600)
    if "error" in out:
        raise out["error"]
    return {"launch_s": launch_s, "resume_s": resume_s,
            "resumed_at_step": float(resumed["step"] - 1)}


def _registered_step(run_dir: Path) -> int:
    import json

    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(((snapshot.get("latest_checkpoint_result") or {}).get("metrics") or {})
               .get("step", 0))


def _one_second(config: dict[str, Any]) -> None:
    from ray import tune

    time.sleep(1.0)
    tune.report({"done": 1})


def _held_cpus(job_hex: str) -> float:
    """CPUs reserved by this job's live placement groups (a group's id ends with its job's)."""
    from ray.util import placement_group_table

    return sum(float(b.get("CPU", 0)) for pg_id, info in placement_group_table().items()
               if pg_id.endswith(job_hex) and info["state"] != "REMOVED"
               for b in info["bundles"].values())


def bench_tune_overhead(cfg: Any, trials: int, concurrency: int = 2) -> dict[str, float]:
    """``trials`` one-second trials, ``concurrency`` at a time, on the training pool, with the
    settings ``sweep()`` uses (actor reuse, reservations bounded by the quota); also samples
    the CPUs the job's trial placement groups hold at 10 Hz."""
    import ray
    from ray import tune

    from mlplat.cluster import pool_resource
    from mlplat.training._sweep import bounded_trial_reservations

    trainable = tune.with_resources(_one_second, {"CPU": 1, pool_resource("training-spot"): 1})
    job_hex = ray.get_runtime_context().get_job_id()
    held: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            held.append(_held_cpus(job_hex))

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory(prefix="mlplat-bench-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space={"i": tune.grid_search(list(range(trials)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=tune.RunConfig(name="bench-tune", storage_path=storage, verbose=0),
        )
        sampler.start()
        t = time.perf_counter()
        with bounded_trial_reservations(float(concurrency)):
            grid = tuner.fit()
        wall_s = time.perf_counter() - t
        stop.set()
        sampler.join(5)
    ok = sum(1 for i in range(len(grid)) if grid[i].error is None)
    minimum_s = math.ceil(trials / concurrency) * 1.0
    return {"trials": float(trials), "ok": float(ok), "wall_s": wall_s, "min_s": minimum_s,
            "ratio": wall_s / minimum_s, "max_held_cpus": max(held, default=0.0),
            "samples": float(len(held))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-trials", type=int, default=200)
    parser.add_argument("--skip-train", action="store_true", help="Only the Tune benchmark.")
    parser.add_argument("--skip-tune", action="store_true", help="Only launch/resume.")
    args = parser.parse_args(argv if argv is not None else [])

    import ray

    from mlplat.cluster import PLATFORM_NAMESPACE
    from mlplat.config import load_config

    cfg = load_config(os.environ.get("MLPLAT_CONFIG") or REPO / "platform.yaml")
    address = os.environ.get("RAY_ADDRESS") or f"127.0.0.1:{cfg.local_cluster.gcs_port}"
    try:
        ray.init(address=address, namespace=PLATFORM_NAMESPACE, logging_level="ERROR",
                 runtime_env={"env_vars": {"MLPLAT_HOME": cfg.root()}})
    except Exception as exc:
        print(f"skipped: no Ray cluster at {address} ({exc}); start one with `mlplat cluster up`")
        return
    slo = cfg.slos.training
    try:
        if not args.skip_train:
            r = bench_launch_and_resume(cfg)
            print(f"launch latency (submit → first step): {r['launch_s']:.1f} s = "
                  f"{r['launch_s'] / slo.launch_s:.2f}× the {slo.launch_s} s SLO")
            print(f"resume latency (SIGKILL → first step after resume, from step "
                  f"{r['resumed_at_step']:.0f}): {r['resume_s']:.1f} s = "
                  f"{r['resume_s'] / slo.preempted_resume_s:.3f}× the {slo.preempted_resume_s} s "
                  f"SLO, {r['resume_s'] / LOCAL_RESUME_GOAL_S:.2f}× the "
                  f"{LOCAL_RESUME_GOAL_S:.0f} s local goal")
        if not args.skip_tune:
            t = bench_tune_overhead(cfg, args.tune_trials)
            print(f"Tune overhead: {t['trials']:.0f} one-second trials on 2 CPUs "
                  f"({t['ok']:.0f} ok) in {t['wall_s']:.1f} s vs minimum {t['min_s']:.0f} s: "
                  f"{t['ratio']:.2f}× (goal ≤ 1.10×); at most {t['max_held_cpus']:.0f} CPUs "
                  f"reserved at once in {t['samples']:.0f} samples (quota 2)")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
