"""The job queue's admission logic on a real SQLite store with a fake clock (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplat.config import PlatformConfig, load_config
from mlplat.errors import NotFoundError, UserError
from mlplat.scheduling import JobQueue, JobRequest, QueueStore, validate_request

REPO = Path(__file__).resolve().parents[3]


def small_quota_config(tmp_path: Path, cpu: float = 4, trials: int = 2) -> PlatformConfig:
    """platform.yaml with every team's training-spot quota shrunk to ``cpu`` CPUs."""
    raw = yaml.safe_load((REPO / "platform.yaml").read_text())
    for team in raw["teams"].values():
        team["quotas"]["training-spot"].update(cpu=cpu, max_concurrent_trials=trials)
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture()
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(small_quota_config(tmp_path), QueueStore(tmp_path / "q.db"), Clock())


def req(team: str = "risk", cpus: float = 2, priority: str = "batch-low") -> JobRequest:
    return JobRequest(team=team, script="jobs/train.py", pool="training-spot", cpus=cpus,
                      priority=priority)


def test_fits_are_admitted_and_the_rest_wait_with_a_reason(queue: JobQueue) -> None:
    a, b, c = queue.submit(req()), queue.submit(req()), queue.submit(req())
    assert [e.id for e in queue.admit()] == [a.id, b.id]
    waiting = queue.store.get(c.id)
    assert waiting.state == "QUEUED"
    assert "waiting for quota: team risk on training-spot" in waiting.reason
    assert "cpu 4+2 > 4" in waiting.reason
    assert queue.usage("risk", "training-spot")["cpu"] == 4


def test_finished_job_releases_quota(queue: JobQueue) -> None:
    a, b = queue.submit(req(cpus=4)), queue.submit(req(cpus=4))
    assert [e.id for e in queue.admit()] == [a.id]
    queue.mark_running(a.id, "raysubmit_1")
    assert queue.admit() == []
    queue.finish(a.id, "SUCCEEDED")
    assert [e.id for e in queue.admit()] == [b.id]


def test_higher_priority_first_and_no_overtaking(queue: JobQueue) -> None:
    running = queue.submit(req(cpus=2))
    queue.admit()
    low = queue.submit(req(cpus=1, priority="batch-low"))
    high = queue.submit(req(cpus=4, priority="batch-high"))
    # The high-priority job is first in line; the small low one may not jump past it.
    assert queue.admit() == []
    assert queue.store.get(low.id).reason.startswith(f"behind {high.id} (batch-high)")
    queue.finish(running.id, "SUCCEEDED")
    assert [e.id for e in queue.admit()] == [high.id]
    queue.finish(high.id, "FAILED")
    assert [e.id for e in queue.admit()] == [low.id]


def test_one_teams_backlog_never_blocks_another(queue: JobQueue) -> None:
    for _ in range(5):
        queue.submit(req(team="risk", cpus=4, priority="serving-critical"))
    other = queue.submit(req(team="search", cpus=4, priority="batch-low"))
    admitted = [e.id for e in queue.admit()]
    assert other.id in admitted and len(admitted) == 2  # one risk job + the search job


def test_job_larger_than_whole_quota_is_refused_at_submit(queue: JobQueue) -> None:
    with pytest.raises(UserError, match=r"cpu=6 on pool 'training-spot' but team 'risk' has a "
                       r"quota of cpu=4 there in total.*Ask for at most 4"):
        queue.submit(req(cpus=6))
    assert queue.entries() == []


def test_bad_priority_team_pool_are_named(tmp_path: Path) -> None:
    cfg = small_quota_config(tmp_path)
    with pytest.raises(UserError, match=r"Unknown priority 'batch-hi'\. Did you mean 'batch-high'"):
        validate_request(cfg, req(priority="batch-hi"))
    with pytest.raises(NotFoundError, match=r"Unknown team 'rsk'"):
        validate_request(cfg, req(team="rsk"))
    with pytest.raises(NotFoundError, match=r"Unknown node pool 'gpu'"):
        validate_request(cfg, JobRequest(team="risk", script="x", pool="gpu"))
    assert validate_request(cfg, JobRequest(team="risk", script="x")) == (
        cfg.scheduling.default_priority,
        cfg.scheduling.priority_classes[cfg.scheduling.default_priority].value,
    )


def test_state_survives_a_new_queue_over_the_same_store(tmp_path: Path) -> None:
    cfg = small_quota_config(tmp_path)
    first = JobQueue(cfg, QueueStore(tmp_path / "q.db"), Clock())
    a = first.submit(req(cpus=4))
    first.admit()
    first.mark_running(a.id, "raysubmit_9")
    b = first.submit(req(cpus=4))
    again = JobQueue(cfg, QueueStore(tmp_path / "q.db"), Clock())  # e.g. the actor restarted
    assert again.usage("risk", "training-spot")["cpu"] == 4
    assert again.admit() == []
    assert again.store.get(b.id).state == "QUEUED"


def test_only_queued_jobs_can_be_cancelled(queue: JobQueue) -> None:
    a = queue.submit(req(cpus=4))
    queue.admit()
    with pytest.raises(UserError, match=r"only queued jobs can be cancelled"):
        queue.cancel(a.id)
    b = queue.submit(req(cpus=4))
    assert queue.cancel(b.id).state == "CANCELLED"
