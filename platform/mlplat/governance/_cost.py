"""Cost attribution: resource-seconds of jobs, trials and replicas × the pool price table.

``CostMeter`` is the plain, Ray-free logic behind the ``mlplat-cost-meter`` actor. Every price
comes from platform.yaml (``pools.<name>.price_usd_per_hour`` / ``cpus_per_node``); nothing here
knows a price.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import CostRecord
from mlplat.errors import InfraError, MlplatError, UserError

UsageKind = Literal["job", "trial", "replica"]
_KINDS = ("job", "trial", "replica")
JOB_METADATA_KEYS = ("team", "model", "pool", "cpus")
"""Submission metadata mlplat sets on every job (``mlplat jobs submit``); the meter reads it."""
DEFAULT_MAX_RECORDS = 10_000


class CostReport(BaseModel):
    """Spend so far, by team, by model and per inference.

    Example:
        >>> CostMeter(cfg).report().by_team
        {}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    generated_at: datetime = Field(description="When the report was made (UTC).")
    total_usd: float = Field(ge=0)
    by_team: dict[str, float] = Field(description="team → USD.")
    by_model: dict[str, float] = Field(description="model → USD (jobs, trials and replicas).")
    by_pool: dict[str, float] = Field(description="pool → USD.")
    by_team_model: dict[str, dict[str, float]] = Field(description="team → model → USD.")
    per_inference_usd: dict[str, float] = Field(
        description="model → serving (replica) USD per recorded inference; models without "
        "recorded inferences are absent."
    )
    inferences: dict[str, int] = Field(description="model → inferences recorded.")
    records: list[CostRecord] = Field(
        description="Job records (one per job, latest value) plus the most recent usage records."
    )
    skipped_jobs: dict[str, str] = Field(
        default_factory=dict, description="job id → why it could not be attributed."
    )


class CostMeter:
    """Attributes resource-seconds to team and model at the prices in platform.yaml.

    Thread-safe. Totals are exact over the meter's lifetime; ``records`` in the report keeps
    every job plus the newest ``max_records`` usage records.

    Args:
        cfg: Platform config (teams and pool prices).
        clock: Seconds since the epoch; running jobs are charged up to it.
        max_records: Usage records kept for listing (totals never forget).

    Example:
        >>> meter = CostMeter(cfg)
        >>> meter.record_usage("risk", "fraud", "replica", "serving-ondemand", cpus=1,
        ...                    seconds=3600, source="fraud-v2").cost_usd
        0.1515
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        clock: Callable[[], float] = time.time,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self._usage_totals: dict[tuple[str, str, str, str], float] = defaultdict(float)
        self._recent: deque[CostRecord] = deque(maxlen=max_records)
        self._jobs: dict[str, CostRecord] = {}
        self._skipped: dict[str, str] = {}
        self._inferences: dict[str, int] = defaultdict(int)

    def _price(self, team: str, pool: str) -> float:
        self._cfg.team(team)  # NotFoundError naming the known teams
        return self._cfg.pool(pool).price_usd_per_cpu_second

    def _make(self, team: str, model: str, kind: str, pool: str, cpus: float, seconds: float,
              source: str) -> CostRecord:
        if kind not in _KINDS:
            raise UserError(f"Usage kind must be one of {list(_KINDS)}, got {kind!r}.")
        if not model:
            raise UserError("Usage must name the model it was for (model='').")
        for name, value in (("cpus", cpus), ("seconds", seconds)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise UserError(f"{name} must be a finite number ≥ 0, got {value!r}.")
        resource_seconds = float(cpus) * float(seconds)
        return CostRecord(
            team=team, model=model, kind=kind, pool=pool,  # type: ignore[arg-type]
            resource_seconds=resource_seconds,
            cost_usd=resource_seconds * self._price(team, pool), source=source,
        )

    def record_usage(
        self,
        team: str,
        model: str,
        kind: UsageKind,
        pool: str,
        cpus: float,
        seconds: float,
        source: str,
    ) -> CostRecord:
        """Charge ``cpus × seconds`` on ``pool`` to ``team``/``model``.

        Args:
            team: Team from platform.yaml.
            model: Model the resources worked for.
            kind: ``job``, ``trial`` or ``replica`` (replicas feed cost per inference).
            pool: Node pool from platform.yaml; its price per CPU-second applies.
            cpus: Logical CPUs held.
            seconds: For how long.
            source: Job id, trial id or deployment/replica name, for tracing a charge back.

        Returns:
            The ``CostRecord`` (``cost_usd = cpus × seconds × price_usd_per_cpu_second``).

        Raises:
            NotFoundError: unknown team or pool (the message lists the known ones).
            UserError: unknown kind, or negative/non-finite cpus or seconds.

        Example:
            >>> meter.record_usage("risk", "fraud", "trial", "training-spot", 2, 60, "t-7").kind
            'trial'
        """
        record = self._make(team, model, kind, pool, cpus, seconds, source)
        with self._lock:
            self._usage_totals[(team, model, kind, pool)] += record.cost_usd
            self._recent.append(record)
        return record

    def record_inferences(self, model: str, count: int) -> int:
        """Add ``count`` served requests to ``model``'s inference count; returns the new total.

        Example:
            >>> meter.record_inferences("fraud", 1000)
            1000
        """
        if not isinstance(count, int) or count < 0:
            raise UserError(f"Inference count must be an int ≥ 0, got {count!r}.")
        with self._lock:
            self._inferences[model] += count
            return self._inferences[model]

    def ingest_jobs(self, jobs: Iterable[Any]) -> list[CostRecord]:
        """Charge Ray jobs from their submission metadata; idempotent.

        Each job (``ray.job_submission.JobDetails`` or anything with ``submission_id``,
        ``status``, ``start_time``/``end_time`` in ms and ``metadata``) is charged
        ``cpus × (end − start)`` on its pool; a running job is charged up to now and re-charged
        (replaced, never added twice) on the next call. Jobs without mlplat metadata are listed
        in the report's ``skipped_jobs`` instead.

        Returns:
            The records that are new or changed since the last call.

        Example:
            >>> [r.source for r in meter.ingest_jobs(JobSubmissionClient(url).list_jobs())]
            ['raysubmit_abc']
        """
        changed: list[CostRecord] = []
        now_ms = self._clock() * 1000.0
        for job in jobs:
            job_id = getattr(job, "submission_id", None)
            if not job_id:
                continue  # a plain driver (ray.init), not a submitted job: nothing to bill
            status = str(getattr(job.status, "value", job.status))
            start = getattr(job, "start_time", None)
            if status == "PENDING" or start is None:
                continue
            end = getattr(job, "end_time", None) if status != "RUNNING" else None
            end = now_ms if end is None else end
            meta = dict(getattr(job, "metadata", None) or {})
            missing = [k for k in JOB_METADATA_KEYS if k not in meta]
            try:
                if missing:
                    raise UserError(
                        f"no mlplat metadata {missing}; submit with `mlplat jobs submit` or pass "
                        "metadata team/model/pool/cpus to `ray job submit`"
                    )
                try:
                    cpus = float(meta["cpus"])
                except ValueError as exc:
                    raise UserError(f"metadata cpus={meta['cpus']!r} is not a number") from exc
                record = self._make(meta["team"], meta["model"], meta.get("kind", "job"),
                                    meta["pool"], cpus, max(0.0, end - start) / 1000.0, job_id)
            except MlplatError as exc:
                with self._lock:
                    self._skipped[job_id] = str(exc)
                continue
            with self._lock:
                self._skipped.pop(job_id, None)
                if self._jobs.get(job_id) != record:
                    self._jobs[job_id] = record
                    changed.append(record)
        return changed

    def collect_jobs(self, dashboard_url: str) -> list[CostRecord]:
        """List the cluster's jobs through the Ray job API and ``ingest_jobs`` them.

        Args:
            dashboard_url: Ray dashboard URL, e.g. ``http://127.0.0.1:8265``.

        Raises:
            InfraError: the job API cannot be reached.

        Example:
            >>> meter.collect_jobs("http://127.0.0.1:8265")
            []
        """
        from ray.job_submission import JobSubmissionClient

        try:
            jobs = JobSubmissionClient(dashboard_url).list_jobs()
        except Exception as exc:  # the SDK raises bare ConnectionError/RuntimeError
            raise InfraError(
                f"Cannot list Ray jobs at {dashboard_url}: {exc}. Is the cluster up "
                "(`mlplat cluster up`) and the dashboard enabled?"
            ) from exc
        return self.ingest_jobs(jobs)

    def report(self) -> CostReport:
        """Totals by team, model and pool, and serving cost per inference.

        Example:
            >>> meter.report().per_inference_usd["fraud"]
            0.0001515
        """
        with self._lock:
            lines = [((t, m, k, p), usd) for (t, m, k, p), usd in self._usage_totals.items()]
            lines += [((r.team, r.model, r.kind, r.pool), r.cost_usd) for r in self._jobs.values()]
            records = [*self._jobs.values(), *self._recent]
            inferences = dict(self._inferences)
            skipped = dict(self._skipped)
        by_team: dict[str, float] = defaultdict(float)
        by_model: dict[str, float] = defaultdict(float)
        by_pool: dict[str, float] = defaultdict(float)
        serving: dict[str, float] = defaultdict(float)
        by_team_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (team, model, kind, pool), usd in lines:
            by_team_model[team][model] += usd
            by_team[team] += usd
            by_model[model] += usd
            by_pool[pool] += usd
            if kind == "replica":
                serving[model] += usd
        return CostReport(
            generated_at=datetime.fromtimestamp(self._clock(), tz=UTC),
            total_usd=sum(by_team.values()),
            by_team=dict(by_team), by_model=dict(by_model), by_pool=dict(by_pool),
            by_team_model={t: dict(ms) for t, ms in by_team_model.items()},
            per_inference_usd={m: serving[m] / n for m, n in inferences.items() if n > 0},
            inferences=inferences, records=records, skipped_jobs=skipped,
        )
