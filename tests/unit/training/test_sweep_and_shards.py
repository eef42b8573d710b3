"""Sweep concurrency from quotas, shard/batch helpers, step-log reading (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlplat.errors import UserError
from mlplat.training import read_step_log, trial_concurrency
from mlplat.training._loop import STEP_LOG_DIR, batches_per_epoch, epoch_shard
from tests.unit.training.ddp_reference import reference_run
from tests.unit.training.test_queue import small_quota_config


def test_trial_concurrency_is_the_quota_capped_by_cpus(tmp_path: Path) -> None:
    cfg = small_quota_config(tmp_path, cpu=4, trials=3)
    assert trial_concurrency(cfg, "risk", cpus_per_trial=1) == 3  # max_concurrent_trials
    assert trial_concurrency(cfg, "risk", cpus_per_trial=2) == 2  # 4 CPUs / 2
    with pytest.raises(UserError, match=r"Team 'risk' may run no trial on 'training-spot'.*"
                       r"max_concurrent_trials=3, cpu=4 and 8 CPU per trial"):
        trial_concurrency(cfg, "risk", cpus_per_trial=8)


def test_production_quota_gives_the_documented_concurrency(platform_config) -> None:
    q = platform_config.teams["risk"].quotas["training-spot"]
    assert trial_concurrency(platform_config, "risk", 1) == min(q.max_concurrent_trials, q.cpu)


def test_shards_are_equal_disjoint_and_seeded() -> None:
    a = [epoch_shard(103, 2, r, seed=7, epoch=3) for r in range(2)]
    assert len(a[0]) == len(a[1]) == 51 and not set(a[0]) & set(a[1])
    assert np.array_equal(a[0], epoch_shard(103, 2, 0, seed=7, epoch=3))  # reproducible
    assert not np.array_equal(a[0], epoch_shard(103, 2, 0, seed=7, epoch=4))  # reshuffled
    assert batches_per_epoch(103, 2, 10) == 6


def test_reference_ddp_equals_one_process_on_the_union_batch() -> None:
    # Two ranks averaging gradients of equal-size batches = one step on both batches together.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (rng.random(64) < 0.5).astype(np.float32)

    def build(width: int, hidden: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, 1), torch.nn.Flatten(0))

    two, _ = reference_run(build, x, y, x, y, world=2, batch_size=8, seed=3, epochs=1,
                           learning_rate=0.01, hidden_units=4)
    torch.manual_seed(3)
    model = build(5, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    shards = [epoch_shard(64, 2, r, 3, 0) for r in range(2)]
    rank0_losses = []
    for b in range(batches_per_epoch(64, 2, 8)):
        with torch.no_grad():
            i0 = shards[0][b * 8 : (b + 1) * 8]
            rank0_losses.append(float(torch.nn.functional.binary_cross_entropy_with_logits(
                model(torch.from_numpy(x[i0])), torch.from_numpy(y[i0]))))
        idx = np.concatenate([s[b * 8 : (b + 1) * 8] for s in shards])
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()
        opt.step()
    assert [s for s, _ in two] == [1, 2, 3, 4]
    np.testing.assert_allclose([loss for _, loss in two], rank0_losses, rtol=1e-5)


def test_read_step_log(tmp_path: Path) -> None:
    folder = tmp_path / STEP_LOG_DIR
    folder.mkdir()
    (folder / "steps.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 0.1, "attempt": "a", "t": s}) for s in (1, 2))
        + "\n"
    )
    log = read_step_log(tmp_path)
    assert [s["step"] for s in log["steps"]] == [1, 2] and log["starts"] == []
    assert read_step_log(tmp_path / "missing") == {"steps": [], "starts": [], "preemptions": []}


class _FakePG:
    def ready(self) -> object:
        return object()


def test_trial_reservations_never_exceed_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune asks for a group for the next trial before the finished trial's group is removed;
    under ``bounded_trial_reservations`` the request waits until the old group is freed."""
    from ray.air.execution.resources import placement_group as pgm
    from ray.air.execution.resources.request import ResourceRequest
    from ray.tune.execution import tune_controller

    from mlplat.training._sweep import bounded_trial_reservations

    created: list[_FakePG] = []
    removed: list[_FakePG] = []

    def make_pg(self: ResourceRequest) -> _FakePG:
        created.append(_FakePG())
        return created[-1]

    monkeypatch.setattr(ResourceRequest, "to_placement_group", make_pg)
    monkeypatch.setattr(pgm, "remove_placement_group", removed.append)
    monkeypatch.setattr(pgm.ray, "wait", lambda futures, **kw: (list(futures), []))
    trial = ResourceRequest([{"CPU": 1.0, "pool:training-spot": 1.0}])
    original = tune_controller.PlacementGroupResourceManager
    with bounded_trial_reservations(2.0):
        manager = tune_controller.PlacementGroupResourceManager()
    assert tune_controller.PlacementGroupResourceManager is original  # swapped back
    first, second = (manager.request_resources(trial), manager.request_resources(trial))
    assert (first, second) == (None, None) and len(created) == 2
    a, b = manager.acquire_resources(trial), manager.acquire_resources(trial)
    assert a and b
    manager.request_resources(trial)  # trial 3 while trials 1 and 2 still hold their groups
    manager.update_state()
    assert len(created) == 2  # deferred: 2 CPUs held = the quota
    manager.free_resources(a)  # trial 1's actor stopped: its group goes, trial 3's comes
    assert len(created) == 3 and removed == [a.placement_group]
    manager.request_resources(trial)
    manager.cancel_resource_request(trial)  # the deferred request, not a created group
    assert len(created) == 3 and len(removed) == 1
    manager.update_state()
    assert manager.acquire_resources(trial) is not None
