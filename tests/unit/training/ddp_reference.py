"""An uninterrupted DDP run computed in one process, to compare fault-drill runs against.

DDP all-reduces (averages) the gradients of every rank's local mean loss, so summing
``loss_r / world`` over the ranks' batches before one optimizer step is the same computation
(up to float summation order). Shards and batches come from the training loop's own helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlplat.training._loop import batches_per_epoch, epoch_shard, evaluate


def reference_run(
    build_model: Callable[[int, int], Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    world: int,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    hidden_units: int,
) -> tuple[list[list[float]], dict[str, float]]:
    """``([[step, rank-0 loss], …], final validation metrics)`` of an uninterrupted run."""
    torch.manual_seed(seed)
    model = build_model(x_train.shape[1], hidden_units)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n_batches = batches_per_epoch(len(x_train), world, batch_size)
    losses: list[list[float]] = []
    step = 0
    for epoch in range(epochs):
        shards = [epoch_shard(len(x_train), world, r, seed, epoch) for r in range(world)]
        for b in range(n_batches):
            optimizer.zero_grad(set_to_none=True)
            rank0_loss = 0.0
            for r, shard in enumerate(shards):
                idx = shard[b * batch_size : (b + 1) * batch_size]
                loss = loss_fn(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
                (loss / world).backward()
                if r == 0:
                    rank0_loss = float(loss.item())
            optimizer.step()
            step += 1
            losses.append([step, rank0_loss])
    model.eval()
    return losses, evaluate(model, x_val, y_val)
