"""The function every Ray Train worker runs: DDP over in-memory arrays, checkpoint, resume.

Kept free of MLflow and of the platform config on purpose: workers only train and report;
all metadata writes happen on the driver (one writer per SQLite store, see experiment plane).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
META_FILE = "meta.json"
STEPS_FILE = "steps.json"
"""Per-step metric history inside every checkpoint: ``[[step, train_loss], …]`` for every
optimizer step the checkpoint contains, so a resumed run's history is exactly one entry per
planned step (replayed steps replace, never duplicate, what a dead attempt did)."""
STEP_LOG_DIR = "step_log"
"""Folder (under the run's checkpoint folder, local storage only) where rank 0 appends one JSON
line per executed step and every rank one line per start: what really ran, replays included."""
PREEMPTION_LOG = "preemptions.jsonl"
"""Step-log file where rank 0 records each drain notice when it sees it and again once its
just-in-time checkpoint is saved (the drill's timeline, complete even if the save never ends)."""
PREEMPTION_HOLD_GRACE_S = 30.0
"""After the just-in-time checkpoint workers stop stepping until Ray Train tears them down at
the drain deadline; if they are still alive this long after it (drain cancelled), they resume."""
DEFAULT_DRAIN_DEADLINE_S = 120.0
"""Ray Train's own wait when a drain carries no deadline (DEFAULT_PREEMPTION_DEADLINE_S)."""


def epoch_shard(n_rows: int, world: int, rank: int, seed: int, epoch: int) -> np.ndarray:
    """Row indices ``rank`` trains on in ``epoch``: a seeded shuffle cut into equal shards.

    Every rank gets the same number of rows (a rank with one extra batch would wait forever in
    all-reduce), and the order depends only on ``seed + epoch``, so a resumed run replays the
    exact batches an uninterrupted one would see.

    Example:
        >>> epoch_shard(10, world=2, rank=1, seed=7, epoch=0).shape
        (5,)
    """
    per_rank = n_rows // world
    order = np.random.default_rng(seed + epoch).permutation(n_rows)
    return order[: per_rank * world][rank::world]


def batches_per_epoch(n_rows: int, world: int, batch_size: int) -> int:
    """Optimizer steps per epoch (the last batch of a shard may be short).

    Example:
        >>> batches_per_epoch(1000, world=2, batch_size=128)
        4
    """
    return max(1, -(-(n_rows // world) // batch_size))


def _append_line(path: Path, record: dict[str, Any]) -> None:
    # One short O_APPEND write per line: concurrent writers never interleave inside a line.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_step_log(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The step log of a run: ``{"steps": [...], "starts": [...]}`` in write order.

    ``steps`` holds one record per optimizer step rank 0 executed (``step``, ``loss``,
    ``attempt``, ``t``), replays after a failure included; ``starts`` one record per worker
    start (``rank``, ``pid``, ``node_id``, ``attempt``, ``step``, ``total_steps``);
    ``preemptions`` two records per drain notice: ``event: "notice"`` when a worker first saw
    it (``step``, ``attempt``, ``t``, ``deadline_t``), then ``event: "saved"`` once its
    just-in-time checkpoint was reported (``step``, ``attempt``, ``t``). Empty for remote
    storage.

    Example:
        >>> log = read_step_log(".mlplat/checkpoints/nightly")
        >>> [s["step"] for s in log["steps"]][:3]
        [1, 2, 3]
    """
    folder = Path(run_dir) / STEP_LOG_DIR
    out: dict[str, list[dict[str, Any]]] = {"steps": [], "starts": [], "preemptions": []}
    for key, name in (
        ("steps", "steps.jsonl"), ("starts", "starts.jsonl"), ("preemptions", PREEMPTION_LOG)
    ):
        path = folder / name
        if path.is_file():
            out[key] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def _hold_until_reclaimed(info: Any) -> None:
    """Stop stepping after the just-in-time checkpoint: every later step would be thrown away
    when the node goes, so wait for Ray Train to tear the group down at the deadline."""
    deadline_ms = getattr(info, "deadline_ms", None)
    deadline_s = deadline_ms / 1000 if deadline_ms else time.time() + DEFAULT_DRAIN_DEADLINE_S
    while time.time() < deadline_s + PREEMPTION_HOLD_GRACE_S:
        time.sleep(0.2)


def auc_score(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via scikit-learn; NaN when only one class is present (no ranking to score)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, scores))


def evaluate(module: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Validation loss, AUC and accuracy (threshold 0.5) of ``module`` on ``x``/``y``."""
    import torch

    with torch.inference_mode():
        logits = module(torch.from_numpy(x))
        target = torch.from_numpy(y)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item()
        probs = torch.sigmoid(logits).numpy()
    return {
        "val_loss": float(loss),
        "val_auc": auc_score(y, probs),
        "val_accuracy": float(((probs >= 0.5) == (y >= 0.5)).mean()),
    }


def _all_reduce_mean(total: float, count: int) -> float:
    """Mean over every worker's (sum, count); the local mean when not distributed."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        buf = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(buf)
        total, count = float(buf[0]), int(buf[1])
    return total / max(count, 1)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point (runs on every worker). See ``_train.train`` for ``config``."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    from torch import nn

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed, epochs = int(config["seed"]), int(config["epochs"])
    batch_size, every = int(config["batch_size"]), int(config["checkpoint_every_steps"])
    min_step_s = float(config.get("min_step_s") or 0.0)
    torch.manual_seed(seed)

    data = ray.get(config["data_ref"])
    x_train, y_train = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"], data["y_val"]

    model: nn.Module = config["build_model"](
        int(config["input_width"]), int(config["hidden_units"])
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    epoch, batch_in_epoch, global_step = 0, 0, 0
    history: list[dict[str, Any]] = []
    step_losses: list[list[float]] = []
    starts: list[dict[str, Any]] = []

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            epoch, batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
            global_step = int(state["global_step"])
            history = json.loads((Path(folder) / HISTORY_FILE).read_text())
            starts = json.loads((Path(folder) / META_FILE).read_text())["starts"]
            steps_file = Path(folder) / STEPS_FILE
            if steps_file.is_file():
                step_losses = json.loads(steps_file.read_text())
    starts.append({"submission": config["submission_id"], "step": global_step, "epoch": epoch})
    # Rank 0's process names the attempt: each restart of the worker group is a new process.
    attempt = f"{config['submission_id'][:8]}-{os.getpid()}"
    log_dir = Path(config["step_log_dir"]) if config.get("step_log_dir") else None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        _append_line(
            log_dir / "starts.jsonl",
            {
                "rank": rank,
                "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "attempt": attempt,
                "step": global_step,
                "total_steps": epochs * batches_per_epoch(len(x_train), world, batch_size),
                "t": time.time(),
            },
        )

    # prepare_model after loading: DDP broadcasts rank 0's parameters to the others.
    ddp_model = ray.train.torch.prepare_model(model)
    plain_model = getattr(ddp_model, "module", ddp_model)
    loss_fn = nn.BCEWithLogitsLoss()

    n_batches = batches_per_epoch(len(x_train), world, batch_size)

    def save_and_report(metrics: dict[str, Any], next_epoch: int, next_batch: int) -> None:
        if rank != 0:
            ray.train.report(metrics)
            return
        folder = tempfile.mkdtemp(prefix="mlplat-ckpt-")
        try:
            torch.save(
                {
                    "model": plain_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": next_epoch,
                    "batch_in_epoch": next_batch,
                    "global_step": global_step,
                },
                Path(folder) / STATE_FILE,
            )
            (Path(folder) / HISTORY_FILE).write_text(json.dumps(history))
            (Path(folder) / STEPS_FILE).write_text(json.dumps(step_losses))
            meta = {"starts": starts, "fingerprint": config["fingerprint"]}
            (Path(folder) / META_FILE).write_text(json.dumps(meta))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def validation_metrics() -> dict[str, float]:
        # Only rank 0's metrics reach the controller; the other ranks skip the work.
        if rank != 0:
            return {"val_loss": float("nan"), "val_auc": float("nan"), "val_accuracy": float("nan")}
        plain_model.eval()
        out = evaluate(plain_model, x_val, y_val)
        plain_model.train()
        return out

    def log_preemption(event: str, info: Any) -> None:
        if rank != 0 or log_dir is None:
            return
        deadline_ms = getattr(info, "deadline_ms", None)
        record = {"event": event, "step": global_step, "attempt": attempt, "t": time.time()}
        if event == "notice":
            record["deadline_t"] = deadline_ms / 1000 if deadline_ms else None
        _append_line(log_dir / PREEMPTION_LOG, record)

    saved_for_preemption = False
    pending_hold: Any = None
    while epoch < epochs:
        shard = epoch_shard(len(x_train), world, rank, seed, epoch)
        loss_sum, loss_count = 0.0, 0
        ddp_model.train()
        for b in range(batch_in_epoch, n_batches):
            step_started = time.perf_counter()
            idx = shard[b * batch_size : (b + 1) * batch_size]
            xb, yb = torch.from_numpy(x_train[idx]), torch.from_numpy(y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(ddp_model(xb), yb)
            loss.backward()
            optimizer.step()
            global_step += 1
            step_loss = float(loss.item())
            loss_sum += step_loss * len(idx)
            loss_count += len(idx)
            last_batch = b == n_batches - 1
            preemption = None
            check_ms = None
            if not saved_for_preemption:
                # Asked after every step, whatever the checkpoint interval: a drain notice that
                # leaves one step's time before the deadline always gets its checkpoint. The
                # call is one round trip to Ray Train's sync actor (rank 0's answer, broadcast,
                # so every rank decides alike); its cost is logged per step (``check_ms``).
                asked = time.perf_counter()
                preemption = ray.train.get_preemption_info()
                check_ms = round(1000 * (time.perf_counter() - asked), 3)
                saved_for_preemption = preemption is not None
            if rank == 0:
                step_losses.append([global_step, step_loss])
                if log_dir is not None:
                    _append_line(
                        log_dir / "steps.jsonl",
                        {"step": global_step, "loss": step_loss, "attempt": attempt,
                         "t": time.time(), "check_ms": check_ms,
                         "step_ms": round(1000 * (time.perf_counter() - step_started), 3)},
                    )
            if preemption is not None:
                log_preemption("notice", preemption)
            if (global_step % every == 0 or preemption is not None) and not last_batch:
                metrics = {
                    "epoch": epoch,
                    "step": global_step,
                    "epoch_end": False,
                    "preemption": preemption is not None,
                    "train_loss": _all_reduce_mean(loss_sum, loss_count),
                    **validation_metrics(),
                }
                save_and_report(metrics, epoch, b + 1)
                if preemption is not None:
                    log_preemption("saved", preemption)
                    _hold_until_reclaimed(preemption)
            elif preemption is not None:  # last batch: the epoch-end checkpoint below is the JIT one
                pending_hold = preemption
            if min_step_s > 0:
                # Rate limit (fault drills, benchmarks): a short run that lasts long enough.
                time.sleep(max(0.0, min_step_s - (time.perf_counter() - step_started)))
        train_loss = _all_reduce_mean(loss_sum, loss_count)
        epoch += 1
        batch_in_epoch = 0
        metrics = {
            "epoch": epoch,
            "step": global_step,
            "epoch_end": True,
            "preemption": False,
            "train_loss": train_loss,
            **validation_metrics(),
        }
        history.append(
            {k: metrics[k] for k in ("epoch", "step", "train_loss", "val_loss", "val_auc")}
        )
        save_and_report(metrics, epoch, 0)
        if pending_hold is not None:
            log_preemption("saved", pending_hold)
            if epoch < epochs:
                _hold_until_reclaimed(pending_hold)
        pending_hold = None
