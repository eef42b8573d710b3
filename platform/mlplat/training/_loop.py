"""The function every Ray Train worker runs: DDP over in-memory arrays, checkpoint, resume.

Kept free of MLflow and of the platform config on purpose: workers only train and report;
all metadata writes happen on the driver (one writer per SQLite store, see experiment plane).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
META_FILE = "meta.json"
PREEMPTION_CHECK_EVERY_STEPS = 5
"""How often workers ask whether a node is being drained. The call is a barrier across
workers, so it runs on a step cadence (identical on every rank), not on every step."""


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
    starts.append({"submission": config["submission_id"], "step": global_step, "epoch": epoch})

    # prepare_model after loading: DDP broadcasts rank 0's parameters to the others.
    ddp_model = ray.train.torch.prepare_model(model)
    plain_model = getattr(ddp_model, "module", ddp_model)
    loss_fn = nn.BCEWithLogitsLoss()

    # Every rank takes an equal-length shard so all ranks run the same number of DDP steps
    # (a rank with one extra batch would wait forever in all-reduce).
    per_rank = len(x_train) // world
    batches_per_epoch = max(1, -(-per_rank // batch_size))

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

    saved_for_preemption = False
    while epoch < epochs:
        order = np.random.default_rng(seed + epoch).permutation(len(x_train))
        shard = order[: per_rank * world][rank::world]
        loss_sum, loss_count = 0.0, 0
        ddp_model.train()
        for b in range(batch_in_epoch, batches_per_epoch):
            idx = shard[b * batch_size : (b + 1) * batch_size]
            xb, yb = torch.from_numpy(x_train[idx]), torch.from_numpy(y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(ddp_model(xb), yb)
            loss.backward()
            optimizer.step()
            global_step += 1
            loss_sum += float(loss.item()) * len(idx)
            loss_count += len(idx)
            last_batch = b == batches_per_epoch - 1
            preempting = False
            if global_step % PREEMPTION_CHECK_EVERY_STEPS == 0 and not saved_for_preemption:
                # A spot node is being drained: checkpoint now so the restart loses little.
                preempting = ray.train.get_preemption_info() is not None
                saved_for_preemption = preempting
            if (global_step % every == 0 or preempting) and not last_batch:
                metrics = {
                    "epoch": epoch,
                    "step": global_step,
                    "epoch_end": False,
                    "train_loss": _all_reduce_mean(loss_sum, loss_count),
                    **validation_metrics(),
                }
                save_and_report(metrics, epoch, b + 1)
        train_loss = _all_reduce_mean(loss_sum, loss_count)
        epoch += 1
        batch_in_epoch = 0
        metrics = {
            "epoch": epoch,
            "step": global_step,
            "epoch_end": True,
            "train_loss": train_loss,
            **validation_metrics(),
        }
        history.append(
            {k: metrics[k] for k in ("epoch", "step", "train_loss", "val_loss", "val_auc")}
        )
        save_and_report(metrics, epoch, 0)
