"""The queue as a named, restartable Ray actor, and the client functions the CLI calls.

The actor (``mlplat-job-queue`` in namespace ``mlplat``) owns one ``JobQueue`` over a SQLite
store under the storage root. A background thread ticks every ``tick_s``: it asks the Ray job
API about the jobs it started (a finished job releases its quota) and submits newly admitted
jobs with ``submission_id`` = the queue id, so `ray job list` and `mlplat jobs list` agree.
After a restart it rebuilds from the store: a job caught between admission and submission is
looked up by its submission id and either marked running or queued again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from mlplat.cluster import JOB_QUEUE_ACTOR
from mlplat.config import PlatformConfig
from mlplat.errors import InfraError
from mlplat.scheduling._queue import (
    TERMINAL_STATES,
    JobQueue,
    JobRequest,
    QueueEntry,
    QueueStore,
    validate_request,
)

if TYPE_CHECKING:
    from ray.actor import ActorHandle

QUEUE_DB = "scheduling/queue.db"
TICK_S = 0.5


class JobQueueActor:
    """Actor shell around ``JobQueue``: serialises mutations, submits admitted jobs to Ray."""

    def __init__(self, cfg: PlatformConfig, dashboard_url: str, tick_s: float = TICK_S) -> None:
        self.cfg = cfg
        self.dashboard_url = dashboard_url
        self.queue = JobQueue(cfg, QueueStore(cfg.local_path(QUEUE_DB)))
        self._lock = threading.RLock()
        self._client: Any = None
        self._errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(tick_s,), daemon=True)
        self._thread.start()

    # ---- API (actor methods)

    def ready(self) -> str:
        return "ok"

    def submit(self, request: JobRequest) -> QueueEntry:
        with self._lock:
            entry = self.queue.submit(request)
        self.tick()  # admit at once when there is room, not a tick later
        return self.queue.store.get(entry.id)

    def get(self, job_id: str) -> QueueEntry:
        return self.queue.store.get(job_id)

    def list(self) -> list[QueueEntry]:
        return self.queue.entries()

    def cancel(self, job_id: str) -> QueueEntry:
        with self._lock:
            return self.queue.cancel(job_id)

    def usage(self, team: str, pool: str) -> dict[str, float]:
        return self.queue.usage(team, pool)

    # ---- the loop

    def _ray_jobs(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.dashboard_url)
        return self._client

    def _loop(self, tick_s: float) -> None:
        while not self._stop.wait(tick_s):
            try:
                self.tick()
                self._errors = 0
            except Exception:  # the job API may be restarting; keep the queue alive
                self._errors += 1
                self._client = None

    def tick(self) -> None:
        """Release quota of finished jobs, then start every job that now fits."""
        with self._lock:
            client = self._ray_jobs()
            for e in self.queue.entries():
                if e.state == "RUNNING":
                    status = str(client.get_job_status(e.ray_job_id).value)
                    if status in TERMINAL_STATES:
                        self.queue.finish(e.id, status)
                elif e.state == "STARTING":  # left over from before a restart
                    self._recover(client, e)
            for e in self.queue.admit():
                self._start(client, e)

    def _recover(self, client: Any, e: QueueEntry) -> None:
        try:
            client.get_job_info(e.id)
        except Exception:  # never reached Ray: queue it again, in its old place
            self.queue.requeue(e.id, "resubmitting after a queue restart")
            return
        self.queue.mark_running(e.id, e.id)

    def _start(self, client: Any, e: QueueEntry) -> None:
        from mlplat.jobs import ray_job_spec, submit_with_retry

        spec = ray_job_spec(
            self.cfg, e.script, e.args, team=e.team, model=e.model, pool=e.pool, cpus=e.cpus,
            extra_metadata={"priority": e.priority, "queue_id": e.id},
        )
        try:
            # Retried while the head's job agent is (re)registering ("No available agent").
            ray_job_id = submit_with_retry(client, submission_id=e.id, **spec)
        except Exception as exc:
            self.queue.requeue(e.id, f"submission to Ray failed, retrying: {exc}"[:300])
            raise
        self.queue.mark_running(e.id, ray_job_id)


# --------------------------------------------------------------------------- client side


def job_queue(
    cfg: PlatformConfig, *, name: str = JOB_QUEUE_ACTOR, dashboard_url: str | None = None
) -> ActorHandle:
    """The queue actor (created on first use). The caller must be connected to Ray.

    Example:
        >>> ray.init(address="auto", namespace="mlplat")
        >>> queue = job_queue(cfg)
    """
    import ray

    from mlplat.cluster import platform_actor
    from mlplat.jobs import dashboard_url as default_dashboard

    handle = platform_actor(
        cfg, JobQueueActor, name, cfg, dashboard_url or default_dashboard(cfg),
        max_concurrency=4,
    )
    ray.get(handle.ready.remote(), timeout=60)
    return handle


def _connect() -> None:
    import ray

    from mlplat.cluster import PLATFORM_NAMESPACE

    if not ray.is_initialized():
        try:
            ray.init(address="auto", namespace=PLATFORM_NAMESPACE, logging_level=logging.ERROR)
        except Exception as exc:  # Ray raises ConnectionError / RuntimeError here
            raise InfraError(
                f"Cannot connect to the Ray cluster: {exc}. Start it with `mlplat cluster up`."
            ) from exc


def enqueue(
    cfg: PlatformConfig, request: JobRequest, *, name: str = JOB_QUEUE_ACTOR,
    dashboard_url: str | None = None,
) -> QueueEntry:
    """Check ``request`` locally, then put it in the cluster's queue.

    Example:
        >>> entry = enqueue(cfg, JobRequest(team="risk", script="jobs/train.py",
        ...                 args=["--app", "fraud"], priority="batch-high",
        ...                 pool="training-spot", cpus=2))
        >>> entry.state in {"QUEUED", "RUNNING"}
        True
    """
    import ray

    validate_request(cfg, request)
    _connect()
    entry: Any = ray.get(
        job_queue(cfg, name=name, dashboard_url=dashboard_url).submit.remote(request)
    )
    return cast(QueueEntry, entry)


def list_queue(cfg: PlatformConfig, *, name: str = JOB_QUEUE_ACTOR) -> list[QueueEntry]:
    """Every job the queue knows, oldest first (terminal ones included)."""
    import ray

    _connect()
    entries: Any = ray.get(job_queue(cfg, name=name).list.remote())
    return cast("list[QueueEntry]", entries)


def wait_queued(
    cfg: PlatformConfig, job_id: str, *, name: str = JOB_QUEUE_ACTOR, timeout_s: float = 900.0,
) -> QueueEntry:
    """Block until queued job ``job_id`` reaches a terminal state.

    Raises:
        InfraError: it did not finish within ``timeout_s``.
    """
    import ray

    _connect()
    handle = job_queue(cfg, name=name)
    deadline = time.monotonic() + timeout_s
    while True:
        entry: Any = ray.get(handle.get.remote(job_id))
        if entry.state in TERMINAL_STATES:
            return cast(QueueEntry, entry)
        if time.monotonic() > deadline:
            raise InfraError(f"Queued job {job_id} is still {entry.state} after {timeout_s:.0f}s.")
        time.sleep(0.5)
