"""Cost attribution: resource-seconds of jobs, trials and replicas × the pool price table.

``CostMeter`` is the plain, Ray-free logic behind the ``mlplat-cost-meter`` actor. Every price
comes from platform.yaml (``pools.<name>.price_usd_per_hour`` and the node's CPUs, GPUs and
memory); nothing here knows a price. A holding of ``cpus``/``gpus``/``memory_gib`` on a pool is
charged its *dominant share* of a node — ``price_usd_per_hour / 3600 × max(cpus / cpus_per_node,
gpus / gpus_per_node, memory_gib / memory_gib_per_node)`` per second — because that share is
what it keeps others from using. CPU-only work therefore pays ``price_usd_per_cpu_second``.

Usage intervals live in a SQLite store (``<root>/governance/<name>.db``), so totals survive a
restart and reports can cover any period (``since``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplat._sqlite import open_store_db
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import CostRecord
from mlplat.errors import InfraError, MlplatError, UserError

UsageKind = Literal["job", "trial", "replica"]
_KINDS = ("job", "trial", "replica")
JOB_METADATA_KEYS = ("team", "model", "pool", "cpus")
"""Submission metadata mlplat sets on every job (``mlplat jobs submit``); the meter reads it."""
DEFAULT_MAX_RECORDS = 10_000
WEEK_S = 7 * 24 * 3600.0
TRIAL_ACTOR_CLASSES = ("ImplicitFunc", "Trainable", "TrainTrainable")
"""Actor class names (substrings) of Ray Tune trials; their job's other actors are jobs."""
_GIB = 1024.0 ** 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, team TEXT, model TEXT, kind TEXT,
    pool TEXT, cpus REAL, gpus REAL, memory_gib REAL, start REAL, end REAL, source TEXT,
    job TEXT, measured INTEGER);
CREATE INDEX IF NOT EXISTS usage_end ON usage (end);
CREATE TABLE IF NOT EXISTS inferences (model TEXT, ts REAL, count INTEGER);
CREATE TABLE IF NOT EXISTS tokens (model TEXT, ts REAL, count INTEGER);
CREATE TABLE IF NOT EXISTS serving (app TEXT PRIMARY KEY, team TEXT, model TEXT);
CREATE TABLE IF NOT EXISTS budget_alerts (team TEXT, week INTEGER, PRIMARY KEY (team, week));
"""


class CostReport(BaseModel):
    """Spend over a period, by team, model, pool, kind and per inference.

    Example:
        >>> CostMeter(cfg).report().by_team
        {}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    generated_at: datetime = Field(description="When the report was made (UTC).")
    since: datetime | None = Field(default=None, description="Start of the period (None: all).")
    total_usd: float = Field(ge=0)
    by_team: dict[str, float] = Field(description="team → USD.")
    by_model: dict[str, float] = Field(description="model → USD (jobs, trials and replicas).")
    by_pool: dict[str, float] = Field(description="pool → USD.")
    by_kind: dict[str, float] = Field(default_factory=dict, description="job/trial/replica → USD.")
    by_capacity: dict[str, float] = Field(default_factory=dict, description="spot/on-demand → USD.")
    by_team_model: dict[str, dict[str, float]] = Field(description="team → model → USD.")
    resource_seconds: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="'team/model' → cpu, gpu, memory_gib seconds.")
    per_inference_usd: dict[str, float] = Field(
        description="model → serving (replica) USD per recorded inference; models without "
        "recorded inferences are absent."
    )
    inferences: dict[str, int] = Field(description="model → inferences recorded.")
    per_1k_tokens_usd: dict[str, float] = Field(
        default_factory=dict,
        description="model → serving (replica) USD × 1000 / generated tokens recorded (LLMs); "
        "models without recorded tokens are absent.")
    tokens: dict[str, int] = Field(default_factory=dict,
                                   description="model → generated (completion) tokens recorded.")
    budgets: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="team → week_usd (last 7 days), budget_usd_per_week, used_share.")
    records: list[CostRecord] = Field(
        description="The most recent usage records (one per job, task, actor or usage report)."
    )
    skipped_jobs: dict[str, str] = Field(
        default_factory=dict, description="job id → why it could not be attributed."
    )
    unattributed: dict[str, int] = Field(
        default_factory=dict, description="reason → Ray tasks/actors holding resources that "
        "could not be charged to a team (no job metadata, unknown pool or Serve app).")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


class CostStore:
    """SQLite persistence of usage intervals, inference counts and sent budget alerts."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = open_store_db(self.path, _SCHEMA, "cost store")

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


_COLUMNS = "key, team, model, kind, pool, cpus, gpus, memory_gib, start, end, source, job, measured"
_UPSERT = f"INSERT OR REPLACE INTO usage ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"


class CostMeter:
    """Attributes resource-seconds to team and model at the prices in platform.yaml.

    Thread-safe. Sources: ``record_usage`` (reported by a plane), ``ingest_jobs`` (job
    submission metadata: declared CPUs × the job's run time) and ``ingest_state`` (Ray's state
    API: the resources each task and actor really held, on the pool of its node). A job whose
    tasks/actors were measured is charged from the measurements, not from its declaration.

    Args:
        cfg: Platform config (teams and pool prices).
        clock: Seconds since the epoch; running work is charged up to it.
        max_records: Usage records listed in a report (totals include everything).
        store: Persistence; an in-memory store by default.

    Example:
        >>> meter = CostMeter(cfg)
        >>> meter.record_usage("risk", "fraud", "replica", "serving-ondemand", cpus=1,
        ...                    seconds=3600, source="fraud-v2").cost_usd
        0.1515
    """

    def __init__(self, cfg: PlatformConfig, clock: Callable[[], float] = time.time,
                 max_records: int = DEFAULT_MAX_RECORDS, store: CostStore | None = None) -> None:
        self._cfg = cfg
        self._clock = clock
        self._max_records = max_records
        self._store = store or CostStore()
        self._lock = threading.Lock()
        self._skipped: dict[str, str] = {}
        self._unattributed: dict[str, int] = {}

    # ------------------------------------------------------------------ prices

    def price_per_second(self, pool: str, cpus: float, gpus: float = 0.0,
                         memory_gib: float = 0.0) -> float:
        """USD per second of holding these resources on ``pool`` (dominant share of a node).

        Raises:
            NotFoundError: unknown pool.
            UserError: GPUs on a pool without GPUs.

        Example:
            >>> meter.price_per_second("training-spot", cpus=96)  # a whole p4d node
            0.003213888888888889
        """
        p = self._cfg.pool(pool)
        shares = [cpus / p.cpus_per_node, memory_gib / p.memory_gib_per_node]
        if p.gpus_per_node:
            shares.append(gpus / p.gpus_per_node)
        elif gpus > 0:
            raise UserError(f"Pool '{pool}' has no GPUs (gpus_per_node: 0) but {gpus} were "
                            "charged to it; check the pool label of the node.")
        return p.price_usd_per_hour / 3600.0 * max(shares)

    def _check(self, team: str, model: str, kind: str, pool: str, **amounts: float) -> None:
        if kind not in _KINDS:
            raise UserError(f"Usage kind must be one of {list(_KINDS)}, got {kind!r}.")
        if not model:
            raise UserError("Usage must name the model it was for (model='').")
        for name, value in amounts.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise UserError(f"{name} must be a finite number ≥ 0, got {value!r}.")
        self._cfg.team(team)  # NotFoundError naming the known teams
        self._cfg.pool(pool)

    def _record(self, row: tuple[Any, ...], start: float, end: float) -> CostRecord:
        _key, team, model, kind, pool, cpus, gpus, mem = row[:8]
        seconds = max(0.0, end - start)
        return CostRecord(team=team, model=model, kind=kind, pool=pool,
                          resource_seconds=cpus * seconds,
                          cost_usd=self.price_per_second(pool, cpus, gpus, mem) * seconds,
                          source=row[10])

    # ------------------------------------------------------------------ inputs

    def record_usage(
        self,
        team: str,
        model: str,
        kind: UsageKind,
        pool: str,
        cpus: float,
        seconds: float,
        source: str,
        gpus: float = 0.0,
        memory_gib: float = 0.0,
    ) -> CostRecord:
        """Charge holding ``cpus``/``gpus``/``memory_gib`` on ``pool`` for ``seconds`` (ending now).

        Args:
            team: Team from platform.yaml.
            model: Model the resources worked for.
            kind: ``job``, ``trial`` or ``replica`` (replicas feed cost per inference).
            pool: Node pool from platform.yaml; its prices apply.
            cpus: Logical CPUs held.
            seconds: For how long.
            source: Job id, trial id or deployment/replica name, for tracing a charge back.
            gpus: GPUs held.
            memory_gib: Memory held.

        Returns:
            The ``CostRecord`` (``cost_usd = price_per_second(pool, …) × seconds``).

        Raises:
            NotFoundError: unknown team or pool (the message lists the known ones).
            UserError: unknown kind, or negative/non-finite amounts.

        Example:
            >>> meter.record_usage("risk", "fraud", "trial", "training-spot", 2, 60, "t-7").kind
            'trial'
        """
        self._check(team, model, kind, pool, cpus=cpus, seconds=seconds, gpus=gpus,
                    memory_gib=memory_gib)
        end = self._clock()
        row = (f"usage:{uuid.uuid4().hex}", team, model, kind, pool, float(cpus), float(gpus),
               float(memory_gib), end - float(seconds), end, source, "", 0)
        self._store.many(_UPSERT, [row])
        return self._record(row, row[8], row[9])

    def record_inferences(self, model: str, count: int) -> int:
        """Add ``count`` served requests to ``model``'s inference count; returns the new total.

        Example:
            >>> meter.record_inferences("fraud", 1000)
            1000
        """
        if not isinstance(count, int) or count < 0:
            raise UserError(f"Inference count must be an int ≥ 0, got {count!r}.")
        self._store.many("INSERT INTO inferences VALUES (?,?,?)", [(model, self._clock(), count)])
        return int(self._store.execute("SELECT SUM(count) FROM inferences WHERE model=?",
                                       (model,))[0][0] or 0)

    def record_tokens(self, model: str, count: int) -> int:
        """Add ``count`` generated tokens to ``model`` (LLM replicas push them); returns the
        new total. The report divides the model's replica cost by them: cost per 1k tokens.

        Example:
            >>> meter.record_tokens("tiny-chat", 5000)
            5000
        """
        if not isinstance(count, int) or count < 0:
            raise UserError(f"Token count must be an int ≥ 0, got {count!r}.")
        self._store.many("INSERT INTO tokens VALUES (?,?,?)", [(model, self._clock(), count)])
        return int(self._store.execute("SELECT SUM(count) FROM tokens WHERE model=?",
                                       (model,))[0][0] or 0)

    def register_serving(self, app: str, team: str, model: str) -> None:
        """Charge the Serve app ``app``'s replicas to ``team``/``model`` (default: the app of
        that name under apps/)."""
        self._cfg.team(team)
        self._store.many("INSERT OR REPLACE INTO serving VALUES (?,?,?)", [(app, team, model)])

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
        now = self._clock()
        for job in jobs:
            job_id = _get(job, "submission_id")
            if not job_id:
                continue  # a plain driver (ray.init), not a submitted job: nothing to bill
            status = str(getattr(_get(job, "status"), "value", _get(job, "status")))
            start = _get(job, "start_time")
            if status == "PENDING" or start is None:
                continue
            end = _get(job, "end_time") if status != "RUNNING" else None
            end_s = now if end is None else end / 1000.0
            meta = dict(_get(job, "metadata") or {})
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
                kind = meta.get("kind", "job")
                self._check(meta["team"], meta["model"], kind, meta["pool"], cpus=cpus)
            except MlplatError as exc:
                with self._lock:
                    self._skipped[job_id] = str(exc)
                continue
            with self._lock:
                self._skipped.pop(job_id, None)
            row = (f"job:{job_id}", meta["team"], meta["model"], kind, meta["pool"], cpus, 0.0,
                   0.0, start / 1000.0, end_s, job_id, job_id, 0)
            old = self._store.execute(f"SELECT {_COLUMNS} FROM usage WHERE key=?", (row[0],))
            if not old or tuple(old[0]) != row:
                self._store.many(_UPSERT, [row])
                changed.append(self._record(row, row[8], row[9]))
        return changed

    def collect_jobs(self, dashboard_url: str) -> list[CostRecord]:
        """List the cluster's jobs through the Ray job API and ``ingest_jobs`` them.

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

    def _serving(self, app: str) -> tuple[str, str] | None:
        rows = self._store.execute("SELECT team, model FROM serving WHERE app=?", (app,))
        if rows:
            return str(rows[0][0]), str(rows[0][1])
        from mlplat.deployment import router_app_of

        router = router_app_of(app)
        if router is not None:  # a version in its own application: billed as its router's app
            return self._serving(router)
        from mlplat.apps import load_app

        try:
            spec = load_app(app, self._cfg)
        except MlplatError:
            return None
        return spec.team, spec.name

    def ingest_state(self, nodes: Iterable[Any], jobs: Iterable[Any], actors: Iterable[Any],
                     tasks: Iterable[Any]) -> int:
        """Charge what Ray's state API shows: tasks exactly (their start/end times), actors
        from first to last sighting (so at the sampling period's resolution).

        Attribution: a task or actor belongs to its job's ``team``/``model`` submission
        metadata (``kind`` from the metadata, or ``trial`` for Ray Tune trial actors); a Serve
        replica (``ServeReplica:<app>:<deployment>``) to its app's team and model. The pool is
        the node's ``pool`` label. Holdings of no CPU, GPU or memory cost nothing and are
        ignored; anything else that cannot be attributed is counted in ``unattributed``.

        Returns:
            Usage intervals written (new or extended).

        Example:
            >>> from ray.util import state
            >>> meter.ingest_state(state.list_nodes(), JobSubmissionClient(url).list_jobs(),
            ...                    state.list_actors(detail=True), state.list_tasks(detail=True))
            3
        """
        now = self._clock()
        pools = {str(_get(n, "node_id")): (_get(n, "labels") or {}).get("pool")
                 for n in nodes}
        job_meta: dict[str, tuple[str, dict[str, str]]] = {}
        for j in jobs:
            jid, sid = _get(j, "job_id"), _get(j, "submission_id")
            if jid:
                job_meta[str(jid)] = (str(sid or jid), dict(_get(j, "metadata") or {}))
        unattributed: dict[str, int] = defaultdict(int)
        rows: list[tuple[Any, ...]] = []

        def attribute(job_id: Any, class_name: str) -> tuple[str, str, str, str, str] | None:
            if class_name.startswith("ServeReplica:"):
                parts = class_name.split(":")
                owner = self._serving(parts[1]) if len(parts) > 2 else None
                if owner is None:
                    unattributed["serve app not in apps/ nor registered"] += 1
                    return None
                return owner[0], owner[1], "replica", f"serve:{parts[1]}/{parts[2]}", ""
            sid, meta = job_meta.get(str(job_id), ("", {}))
            if "team" not in meta or "model" not in meta:
                unattributed["job without team/model metadata"] += 1
                return None
            kind = meta.get("kind", "job")
            if any(c in class_name for c in TRIAL_ACTOR_CLASSES):
                kind = "trial"
            return meta["team"], meta["model"], kind, sid, sid

        def resources(obj: Any) -> tuple[float, float, float]:
            req = _get(obj, "required_resources") or {}
            return (float(req.get("CPU", 0.0)), float(req.get("GPU", 0.0)),
                    float(req.get("memory", 0.0)) / _GIB)

        def add(key: str, obj: Any, class_name: str, start: float, end: float) -> None:
            cpus, gpus, mem = resources(obj)
            if cpus == gpus == mem == 0:
                return
            pool = pools.get(str(_get(obj, "node_id")))
            if pool is None:
                unattributed["node without a pool label"] += 1
                return
            owner = attribute(_get(obj, "job_id"), class_name)
            if owner is None:
                return
            team, model, kind, source, job = owner
            try:
                self._check(team, model, kind, pool, cpus=cpus, gpus=gpus, memory_gib=mem)
            except MlplatError:
                unattributed["unknown team or pool"] += 1
                return
            rows.append((key, team, model, kind, pool, cpus, gpus, mem, start, end,
                         f"{source}:{key}" if source else key, job, 1))

        for t in tasks:
            if str(_get(t, "type", "")) != "NORMAL_TASK" or _get(t, "start_time_ms") is None:
                continue
            end_ms = _get(t, "end_time_ms")
            add(f"task:{_get(t, 'task_id')}:{_get(t, 'attempt_number', 0)}", t,
                str(_get(t, "func_or_class_name", "")), _get(t, "start_time_ms") / 1000.0,
                now if end_ms is None else end_ms / 1000.0)
        for a in actors:
            if str(_get(a, "state", "")) != "ALIVE":
                continue
            key = f"actor:{_get(a, 'actor_id')}"
            seen = self._store.execute("SELECT start FROM usage WHERE key=?", (key,))
            add(key, a, str(_get(a, "class_name", "")), float(seen[0][0]) if seen else now, now)
        if rows:
            self._store.many(_UPSERT, rows)
        with self._lock:
            self._unattributed = dict(unattributed)
        return len(rows)

    # ------------------------------------------------------------------ outputs

    def report(self, since: float | None = None) -> CostReport:
        """Spend by team, model, pool, kind and capacity, per inference, and budget use.

        Args:
            since: Only spend after this time (seconds since the epoch); intervals that
                straddle it are prorated. None: everything in the store.

        Example:
            >>> meter.report(since=time.time() - 86400).per_inference_usd["fraud"]
            0.0001515
        """
        now = self._clock()
        lo = since if since is not None else -math.inf
        rows = self._store.execute(f"SELECT {_COLUMNS} FROM usage WHERE end > ? ORDER BY end",
                                   (lo if since is not None else -1e18,))
        measured_jobs = {r[11] for r in rows if r[12] and r[11]}
        rows = [r for r in rows if not (str(r[0]).startswith("job:") and r[11] in measured_jobs)]
        by: dict[str, dict[str, float]] = {k: defaultdict(float) for k in
                                           ("team", "model", "pool", "kind", "capacity")}
        serving: dict[str, float] = defaultdict(float)
        by_team_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        res: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        records: list[CostRecord] = []
        for r in rows:
            team, model, kind, pool, cpus, gpus, mem, start, end = r[1:10]
            start = max(start, lo)
            if end <= start:
                continue
            rec = self._record(r, start, end)
            usd, seconds = rec.cost_usd, end - start
            by["team"][team] += usd
            by["model"][model] += usd
            by["pool"][pool] += usd
            by["kind"][kind] += usd
            by["capacity"][self._cfg.pool(pool).capacity] += usd
            by_team_model[team][model] += usd
            for name, amount in (("cpu", cpus), ("gpu", gpus), ("memory_gib", mem)):
                if amount:
                    res[f"{team}/{model}"][name] += amount * seconds
            if kind == "replica":
                serving[model] += usd
            records.append(rec)
        inferences = {str(m): int(n) for m, n in self._store.execute(
            "SELECT model, SUM(count) FROM inferences WHERE ts > ? GROUP BY model",
            (lo if since is not None else -1e18,))}
        tokens = {str(m): int(n) for m, n in self._store.execute(
            "SELECT model, SUM(count) FROM tokens WHERE ts > ? GROUP BY model",
            (lo if since is not None else -1e18,))}
        week = self.week_spend(now)
        budgets = {t: {"week_usd": week.get(t, 0.0), "budget_usd_per_week": spec.budget_usd_per_week,
                       "used_share": week.get(t, 0.0) / spec.budget_usd_per_week}
                   for t, spec in self._cfg.teams.items()}
        with self._lock:
            skipped, unattributed = dict(self._skipped), dict(self._unattributed)
        return CostReport(
            generated_at=datetime.fromtimestamp(now, tz=UTC),
            since=None if since is None else datetime.fromtimestamp(since, tz=UTC),
            total_usd=sum(by["team"].values()),
            by_team=dict(by["team"]), by_model=dict(by["model"]), by_pool=dict(by["pool"]),
            by_kind=dict(by["kind"]), by_capacity=dict(by["capacity"]),
            by_team_model={t: dict(ms) for t, ms in by_team_model.items()},
            resource_seconds={k: dict(v) for k, v in res.items()},
            per_inference_usd={m: serving[m] / n for m, n in inferences.items() if n > 0},
            inferences=inferences, budgets=budgets,
            per_1k_tokens_usd={m: serving[m] * 1000 / n for m, n in tokens.items() if n > 0},
            tokens=tokens, records=records[-self._max_records:],
            skipped_jobs=skipped, unattributed=unattributed,
        )

    def week_spend(self, now: float | None = None) -> dict[str, float]:
        """team → USD over the last 7 days."""
        now = self._clock() if now is None else now
        lo = now - WEEK_S
        out: dict[str, float] = defaultdict(float)
        for r in self._store.execute(f"SELECT {_COLUMNS} FROM usage WHERE end > ?", (lo,)):
            start = max(r[8], lo)
            if r[9] > start:
                out[r[1]] += self._record(r, start, r[9]).cost_usd
        return dict(out)

    def budget_breaches(self) -> list[tuple[str, float, float]]:
        """Teams whose last-7-days spend crossed ``budget_usd_per_week`` and were not alerted
        yet this week: ``(team, week_usd, budget)``; each is returned once per week."""
        now = self._clock()
        week_no = int(now // WEEK_S)
        out = []
        for team, usd in self.week_spend(now).items():
            budget = self._cfg.teams[team].budget_usd_per_week if team in self._cfg.teams else None
            if budget is None or usd <= budget:
                continue
            if self._store.execute("SELECT 1 FROM budget_alerts WHERE team=? AND week=?",
                                   (team, week_no)):
                continue
            self._store.many("INSERT INTO budget_alerts VALUES (?,?)", [(team, week_no)])
            out.append((team, usd, budget))
        return out
