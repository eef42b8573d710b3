"""Scheduling: the priority job queue under per-team, per-pool quotas from platform.yaml.

``mlplat jobs submit --team T --priority P`` enqueues here; a named, restartable Ray actor
admits jobs when they fit the team's quota (higher priority first) and submits them to Ray.

Example:
    >>> from mlplat.scheduling import JobRequest, enqueue, list_queue
    >>> entry = enqueue(cfg, JobRequest(team="risk", script="jobs/train.py",
    ...                 args=["--app", "fraud", "--dataset", "DIR"], model="fraud",
    ...                 priority="batch-high", pool="training-spot", cpus=2))
    >>> [(e.id, e.state, e.reason) for e in list_queue(cfg)]
"""

from mlplat.scheduling._queue import ACTIVE_STATES as ACTIVE_STATES
from mlplat.scheduling._queue import TERMINAL_STATES as TERMINAL_STATES
from mlplat.scheduling._queue import JobQueue as JobQueue
from mlplat.scheduling._queue import JobRequest as JobRequest
from mlplat.scheduling._queue import QueueEntry as QueueEntry
from mlplat.scheduling._queue import QueueStore as QueueStore
from mlplat.scheduling._queue import team_quota as team_quota
from mlplat.scheduling._queue import validate_request as validate_request
from mlplat.scheduling._service import JobQueueActor as JobQueueActor
from mlplat.scheduling._service import enqueue as enqueue
from mlplat.scheduling._service import job_queue as job_queue
from mlplat.scheduling._service import list_queue as list_queue
from mlplat.scheduling._service import wait_queued as wait_queued

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "JobQueue",
    "JobQueueActor",
    "JobRequest",
    "QueueEntry",
    "QueueStore",
    "enqueue",
    "job_queue",
    "list_queue",
    "team_quota",
    "validate_request",
    "wait_queued",
]
