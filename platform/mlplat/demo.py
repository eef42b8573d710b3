"""The walking skeleton: every plane, for real, at small scale (`make demo`).

1. synthetic fraud transactions as parquet;  2. Feast apply + materialize (SQLite online store);
3. `jobs/build_dataset.py` as a Ray job: point-in-time join on Ray Data → dataset + manifest;
4. `jobs/train.py` as a Ray job, twice: TorchTrainer DDP on the training pool → MLflow run and
   registered version with its model card;  5. the promotion controller releases v1 and
   promotes v2 through its gates, shadow → canary → production;  6. prediction traffic at every stage;  7. drift report and cost report;
8. audit chain verified.

``run_demo`` returns a ``DemoSummary`` so the e2e test asserts on the same flow users run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console
from rich.table import Table

from mlplat.apps import AppConfig, load_app, load_app_module
from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, UserError

if TYPE_CHECKING:
    from mlplat.contracts.v1 import DriftReport

DEMO_PERSON = "carol"
"""Whose token the demo acts with (an incident commander in platform.yaml): the audit log
names her, as it names whoever's token a command carries."""


@dataclass
class DemoSummary:
    dataset_dir: str = ""
    dataset_rows: int = 0
    dataset_sha256: str = ""
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    gates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    shadow: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    endpoint: str = ""
    serving_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    stage_times: list[tuple[str, float, float]] = field(default_factory=list)
    """Each rollout stage of the promoted version: (stage, applying from, in force at)."""
    batch_times: list[tuple[float, float]] = field(default_factory=list)
    """Each traffic batch sent during that rollout: (start, end)."""


@contextmanager
def _step(summary: DemoSummary, console: Console, name: str) -> Iterator[None]:
    """Print a heading for one demo step and record how long it took."""
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    yield
    summary.timings_s[name] = round(time.perf_counter() - t0, 2)


def run_demo(
    cfg: PlatformConfig,
    *,
    app_name: str = "fraud",
    n_accounts: int = 400,
    days: int = 10,
    requests_per_stage: int = 100,
    dashboard_url: str | None = None,
    console: Console | None = None,
) -> DemoSummary:
    """Run the whole flow on a running cluster and return what happened.

    Args:
        cfg: Platform config (the active profile decides storage and rollout timing).
        app_name: App under ``apps/`` to run it for.
        n_accounts: Size of the synthetic data set.
        requests_per_stage: Prediction requests sent at each rollout stage.
        dashboard_url: Ray job API; defaults to the local cluster from `mlplat cluster up`.

    Raises:
        UserError: unknown app, or a promotion gate failed for the first version.
        InfraError: a job failed or the cluster is not reachable.
    """
    import ray

    console = console or Console()
    summary = DemoSummary()
    app = load_app(app_name, cfg)
    if dashboard_url is None:
        from mlplat.cluster import cluster_status

        state = cluster_status(cfg)
        if state is None:
            raise InfraError("No local cluster is running; start it with `mlplat cluster up`.")
        dashboard_url = state.dashboard_url
        if not ray.is_initialized():
            ray.init(address=state.gcs_address, namespace="mlplat", logging_level=logging.ERROR,
                     log_to_driver=False)

    with _step(summary, console, "1. synthetic transactions"):
        raw = _generate(cfg, app, n_accounts, days, console)
    with _step(summary, console, "2. Feast apply + materialize"):
        _features(cfg, app, console)
    with _step(summary, console, "3. point-in-time dataset (Ray job)"):
        _dataset(cfg, app, raw["transactions"], dashboard_url, summary, console)
    with _step(summary, console, "4. DDP training ×2 (Ray jobs)"):
        # Run names carry the dataset hash: a re-run on new data is a new run, not a resume.
        tag = summary.dataset_sha256[:8]
        v1 = _train(cfg, app, summary, dashboard_url, f"demo-{tag}-a", {}, console)
        v2 = _train(cfg, app, summary, dashboard_url, f"demo-{tag}-b",
                    {"hidden_units": app.training.hidden_units * 2,
                     "learning_rate": app.training.learning_rate / 2}, console)
    with _step(summary, console, "5+6. gates, deploy, shadow → canary → production with live traffic"):
        # Start the cost meter first: it samples Ray's state API, so it sees the replicas
        # while they serve (nothing is recorded by hand).
        from mlplat.governance import get_cost_meter

        get_cost_meter(cfg, dashboard_url=dashboard_url)
        _rollout(cfg, app, v1, v2, summary, requests_per_stage, console)
    with _step(summary, console, "7. drift and cost"):
        _drift(cfg, app, v2, summary, console)
        _cost(cfg, app, dashboard_url, summary, console)
    with _step(summary, console, "8. audit chain"):
        _audit(cfg, summary, console)
    _print_summary(cfg, app, summary, dashboard_url, console)
    return summary


# --------------------------------------------------------------------------- steps


def _generate(cfg: PlatformConfig, app: AppConfig, n_accounts: int, days: int,
              console: Console) -> dict[str, Path]:
    datagen = load_app_module(app, "datagen")
    from mlplat.data import raw_dir

    paths = datagen.generate(Path(raw_dir(cfg, app)), n_accounts=n_accounts, days=days, seed=0,
                             end=datetime.now(UTC))
    for name, path in paths.items():
        console.print(f"{name}: {path}")
    return paths


def _features(cfg: PlatformConfig, app: AppConfig, console: Console) -> None:
    from mlplat.data import apply_features, materialize

    views = apply_features(cfg, app)
    materialize(cfg, app, end=datetime.now(UTC))
    console.print(f"applied and materialized feature views: {', '.join(views)}")


def _dataset(cfg: PlatformConfig, app: AppConfig, labels: Path, dashboard_url: str,
             summary: DemoSummary, console: Console) -> None:
    from mlplat.data import read_manifest
    from mlplat.jobs import submit_job

    job = submit_job(cfg, "jobs/build_dataset.py", ["--app", app.name, "--labels", str(labels)],
                     team=app.team, model=app.name, pool="cpu", cpus=1, address=dashboard_url)
    if not job.ok:
        raise InfraError(f"build_dataset job {job.job_id} {job.status}:\n{job.logs[-3000:]}")
    manifest = read_manifest(job.result["manifest"])
    summary.dataset_dir = str(Path(manifest.path).parent)  # manifest.path is the data/ folder
    summary.dataset_rows = manifest.row_count
    summary.dataset_sha256 = manifest.content_sha256
    console.print(f"job {job.job_id}: {manifest.row_count} rows, sha256 {manifest.content_sha256[:16]}…")


def _train(cfg: PlatformConfig, app: AppConfig, summary: DemoSummary, dashboard_url: str,
           run_name: str, overrides: dict[str, Any], console: Console) -> str:
    from mlplat.jobs import submit_job

    args = ["--app", app.name, "--dataset", summary.dataset_dir, "--run-name", run_name]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    cpus = app.training.num_workers * app.training.cpus_per_worker
    job = submit_job(cfg, "jobs/train.py", args, team=app.team, model=app.name,
                     pool=app.training.pool, cpus=cpus, address=dashboard_url)
    if not job.ok:
        raise InfraError(f"train job {job.job_id} {job.status}:\n{job.logs[-3000:]}")
    version = str(job.result["version"])
    summary.versions[version] = {"run": run_name, "job_id": job.job_id, **job.result}
    metrics = job.result.get("metrics", {})
    console.print(f"{run_name}: registered {app.name} v{version}, "
                  f"{app.serving.gate_metric}={metrics.get(app.serving.gate_metric, float('nan')):.3f}")
    return version


def _print_gates(out: dict[str, Any], summary: DemoSummary, console: Console) -> bool:
    """Print the controller's gate verdicts for one version; True when they all passed."""
    gates: list[dict[str, Any]] = next(
        (h["gates"] for h in out["history"] if h.get("event") == "gates"), [])
    summary.gates[out["candidate"]] = gates
    for g in gates:
        console.print(f"  v{out['candidate']} gate {g['name']}: "
                      f"{'PASS' if g['passed'] else 'FAIL'} — {g['detail']}")
    return out["status"] in ("released", "running")


def _rollout(cfg: PlatformConfig, app: AppConfig, v1: str, v2: str, summary: DemoSummary,
             requests_per_stage: int, console: Console, timeout_s: float = 300.0) -> None:
    """Release v1 and promote v2 through the promotion controller — the one path every
    version takes — while traffic flows; each stage's traffic is recorded against the split
    that was in force for all of it."""
    from mlplat.deployment import endpoint_url, promote
    from mlplat.secrets import person_token

    token = person_token(cfg, DEMO_PERSON)
    console.print(f"acting as {DEMO_PERSON} (an incident commander in platform.yaml "
                  f"security.people) with the local token .mlplat/secrets/token-{DEMO_PERSON}")
    _drift_references(cfg, app, [v1, v2], summary)
    deployed_at = time.monotonic()
    bodies = _request_pool(cfg, app)
    rng = random.Random(0)
    # A first release: nothing has been served, so the drift gate cannot be judged; the
    # incident commander accepts that (audited). Every other gate is judged. (On a cluster
    # where the app already serves, v1 is promoted like any version instead.)
    first = promote(cfg, app.name, v1, token=token, reason="first production deployment",
                    override=True)
    if not _print_gates(first, summary, console):
        raise UserError(f"{app.name} v{v1} failed its promotion gates; see above.")
    summary.endpoint = endpoint_url(cfg, app)
    if first["status"] == "running":
        _follow(cfg, app, v1, summary, bodies, rng, requests_per_stage, {}, timeout_s)
    console.print(f"v{v1} is production at {summary.endpoint}")
    stage_stats = _send(summary, bodies, rng, requests_per_stage)
    stage_stats.pop("latencies")
    stage_stats.pop("requests")
    summary.stages.append({"stage": "production-v1", "weights": {v1: 100.0}, **stage_stats})
    # v2's drift gate compares served traffic with v2's training sample: serve until the
    # drift monitor holds enough closed windows to judge it (monitoring.min_window_rows).
    _until_drift_judgeable(cfg, app, v2, summary, bodies, rng, timeout_s)

    started = promote(cfg, app.name, v2, token=token, reason="retrained: wider model")
    if not _print_gates(started, summary, console):
        # Seen on the synthetic data: the drift gate fails (served rows carry the online
        # store's latest feature values, the training rows each label's as-of values). The
        # demo shows the refusal, then the audited way past it: an incident commander's
        # override, which names every gate it accepts; shadow and canaries still judge v2.
        console.print(f"v{v2} was rejected (above); as incident commander, {DEMO_PERSON} "
                      "accepts it for the demo (audited, named in each accepted gate)")
        started = promote(cfg, app.name, v2, token=token, override=True,
                          reason="demo: accept v2's failed gates on synthetic data")
        if not _print_gates(started, summary, console):
            console.print(f"v{v2} cannot be promoted: it stays out of traffic")
            return
    by_stage: dict[str, dict[str, Any]] = {}
    _follow(cfg, app, v2, summary, bodies, rng, requests_per_stage, by_stage, timeout_s)
    for seen_stage in by_stage.values():
        lat = sorted(seen_stage.pop("latencies"))
        seen_stage["p50_ms"] = round(lat[len(lat) // 2], 2)
        seen_stage["p99_ms"] = round(lat[max(0, int(len(lat) * 0.99) - 1)], 2)
        summary.stages.append(seen_stage)
        console.print(f"  {seen_stage['stage']:<12} weights={seen_stage['weights']} "
                      f"shadow={seen_stage['shadow']} observed={seen_stage['observed']}")
    console.print(f"  shadow comparisons: {summary.shadow}")
    summary.serving_s = time.monotonic() - deployed_at


def _until_drift_judgeable(cfg: PlatformConfig, app: AppConfig, version: str,
                           summary: DemoSummary, bodies: list[dict[str, Any]],
                           rng: random.Random, timeout_s: float) -> None:
    import ray

    from mlplat.monitoring import get_drift_monitor

    monitor = get_drift_monitor(cfg)
    deadline = time.monotonic() + timeout_s
    while ray.get(monitor.served_drift.remote(app.name, version), timeout=60) is None:
        if time.monotonic() > deadline:
            raise InfraError(f"the drift monitor could not judge v{version} after "
                             f"{timeout_s:.0f} s of traffic (monitoring.min_window_rows)")
        _send(summary, bodies, rng, 100)


def _follow(cfg: PlatformConfig, app: AppConfig, candidate: str, summary: DemoSummary,
            bodies: list[dict[str, Any]], rng: random.Random, requests_per_stage: int,
            by_stage: dict[str, dict[str, Any]], timeout_s: float) -> None:
    """Send traffic while the controller walks ``candidate``'s rollout, then some more at
    production. Each request is counted for the stage the rollout history says was in force
    from when it was sent until it was answered (one sent while a stage change was being
    applied is left out)."""
    from mlplat.deployment import promotion_status, router_stats

    batch = max(10, requests_per_stage // 4)
    batches: list[tuple[float, float, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        rollout = promotion_status(cfg, app.name)["rollout"]
        if rollout["status"] == "rolled_back":
            raise InfraError(f"the controller rolled v{candidate} back: {rollout['history'][-1]}")
        if rollout["status"] != "running":
            t0 = time.time()
            counts = _send(summary, bodies, rng, requests_per_stage)
            batches.append((t0, time.time(), counts))
            break
        if time.monotonic() > deadline:
            raise InfraError(f"v{candidate}'s rollout did not finish in {timeout_s:.0f} s: "
                             f"{rollout}")
        t0 = time.time()
        counts = _send(summary, bodies, rng, batch)
        batches.append((t0, time.time(), counts))
        if rollout["stage"] == "shadow" and not summary.shadow.get("comparisons"):
            # The router keeps shadow comparisons only while the split names a shadow.
            summary.shadow = router_stats(cfg, app).get("shadow", {})
    # A stage's split is in force from its event's ``t`` (applied everywhere) until the next
    # stage starts being applied (``applying_from``): replicas reconfigure in between.
    stages = [h for h in rollout["history"] if h["event"] == "stage"]
    summary.stage_times = [(h["stage"], round(h["applying_from"], 2), round(h["t"], 2))
                           for h in stages]
    summary.batch_times = [(round(t0, 2), round(t1, 2)) for t0, t1, _ in batches]
    for sent_at, answered_at, version, ms in (r for *_, c in batches for r in c["requests"]):
        current = [i for i, h in enumerate(stages) if h["t"] <= sent_at]
        if not current or (current[-1] + 1 < len(stages)
                           and stages[current[-1] + 1]["applying_from"] < answered_at):
            continue  # before the first stage, or while a stage change was being applied
        stage, split = stages[current[-1]]["stage"], stages[current[-1]]["split"]
        seen = by_stage.setdefault(stage, {"stage": stage, "weights": dict(split["weights"]),
                                           "shadow": split.get("shadow"), "observed": {},
                                           "latencies": []})
        seen["observed"][version] = seen["observed"].get(version, 0) + 1
        seen["latencies"].append(ms)


def _drift_references(cfg: PlatformConfig, app: AppConfig, versions: list[str],
                      summary: DemoSummary, max_rows: int = 2000) -> None:
    """Give the drift monitor each version's training data as its reference distribution."""
    import pyarrow.parquet as pq
    import ray

    from mlplat.monitoring import get_drift_monitor

    names = app.features.feature_names()
    frame = pq.read_table(Path(summary.dataset_dir) / "data", columns=names).to_pandas()
    frame = frame.sample(n=min(max_rows, len(frame)), random_state=0)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    monitor = get_drift_monitor(cfg)
    ray.get([monitor.set_reference.remote(app.name, v, rows) for v in versions], timeout=120)


def _request_pool(cfg: PlatformConfig, app: AppConfig, n: int = 5000) -> list[dict[str, Any]]:
    """Request bodies replayed from the most recent labelled transactions, so served traffic
    looks like production traffic (drift then measures the data, not the demo's dice)."""
    import pyarrow.parquet as pq

    from mlplat.data import raw_dir

    spec = app.features
    columns = [*spec.entity_keys, spec.timestamp_column, *spec.request_features]
    frame = pq.read_table(Path(raw_dir(cfg, app)) / "transactions.parquet",
                          columns=columns).to_pandas()
    frame = frame.sort_values(spec.timestamp_column).tail(n)
    return [
        {"entity": {k: _plain(row[k]) for k in spec.entity_keys},
         "features": {f: _plain(row[f]) for f in spec.request_features}}
        for row in frame.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _send(summary: DemoSummary, bodies: list[dict[str, Any]], rng: random.Random,
          requests_per_stage: int) -> dict[str, Any]:
    import httpx

    observed: dict[str, int] = {}
    latencies: list[float] = []
    sent: list[tuple[float, float, str, float]] = []  # (sent at, answered at, version, ms)
    with httpx.Client(base_url=summary.endpoint, timeout=30) as client:
        for _ in range(requests_per_stage):
            t0 = time.perf_counter()
            sent_at = time.time()
            # Each request carries its own id (as a caller's transaction id would): the split
            # is then per request, not sticky per account (150 accounts in the e2e run).
            body = {**rng.choice(bodies), "request_id": f"demo-{rng.getrandbits(64):016x}"}
            resp = client.post("/predict", json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise InfraError(f"predict returned {resp.status_code}: {resp.text[:500]}")
            answer = resp.json()
            observed[answer["version"]] = observed.get(answer["version"], 0) + 1
            sent.append((sent_at, time.time(), answer["version"], latencies[-1]))
            if len(summary.responses) < 2000:
                summary.responses.append(answer)
    latencies.sort()
    return {"observed": observed, "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
            "latencies": latencies, "requests": sent}


def _drift(cfg: PlatformConfig, app: AppConfig, version: str, summary: DemoSummary,
           console: Console) -> None:
    import ray

    from mlplat.monitoring import get_drift_monitor

    monitor = get_drift_monitor(cfg)
    # The router flushes its samples to the monitor every few hundred ms, off the request
    # path: the last requests' rows may still be on their way.
    # A busy monitor may have closed the window on its own (it closes every window of
    # monitoring.min_window_rows rows): then its report is the latest one.
    deadline = time.monotonic() + 60
    while True:
        try:
            report = cast("DriftReport", ray.get(
                monitor.report.remote(app.name, version, min_rows=50), timeout=180))
            break
        except ray.exceptions.RayTaskError as exc:
            latest: Any = ray.get(monitor.latest_report.remote(app.name, version), timeout=60)
            if latest is not None:
                report = cast("DriftReport", latest)
                break
            if not isinstance(exc.cause, UserError) or time.monotonic() > deadline:
                from mlplat.deployment import router_stats

                errors = ray.get(monitor.errors.remote(), timeout=60)
                sampled = router_stats(cfg, app).get("drift")
                errors["windows"] = str(ray.get(monitor.stats.remote(), timeout=60))
                raise InfraError(f"no drift report for {app.name} v{version} (router samples: "
                                 f"{sampled}; monitor errors: {errors}): {exc.cause}") from exc
            time.sleep(0.5)
    summary.drift = report.model_dump(mode="json")
    table = Table("feature", "method", "score", "drifted", title=f"drift {app.name} v{version}")
    for name, f in report.features.items():
        table.add_row(name, f.method, f"{f.score:.4f}", "yes" if f.drifted else "")
    console.print(table)


def _cost(cfg: PlatformConfig, app: AppConfig, dashboard_url: str, summary: DemoSummary,
          console: Console) -> None:
    import ray

    from mlplat.governance import get_cost_meter

    meter = get_cost_meter(cfg, dashboard_url=dashboard_url)  # measured replicas since deploy
    served = sum(sum(s["observed"].values()) for s in summary.stages)
    ray.get(meter.record_inferences.remote(app.name, served))
    report = ray.get(meter.report.remote(collect=True), timeout=120)
    summary.cost = report.model_dump(mode="json")
    table = Table("team", "model", "USD", title="cost from platform.yaml pool prices")
    for team, models in sorted(report.by_team_model.items()):
        for model, usd in sorted(models.items()):
            table.add_row(team, model, f"{usd:.6f}")
    console.print(table)
    for model, usd in report.per_inference_usd.items():
        console.print(f"cost per inference, {model}: ${usd:.8f}")


def _audit(cfg: PlatformConfig, summary: DemoSummary, console: Console) -> None:
    from mlplat.audit import AuditLog

    result = AuditLog(cfg).verify()
    summary.audit = {"ok": result.ok, "records": result.records}
    console.print(f"audit log: {result.records} records, chain {'OK' if result.ok else 'BROKEN'}")


def _print_summary(cfg: PlatformConfig, app: AppConfig, summary: DemoSummary,
                   dashboard_url: str, console: Console) -> None:
    table = Table("step", "result", title="mlplat demo summary")
    table.add_row("dataset", f"{summary.dataset_rows} rows, sha256 {summary.dataset_sha256[:12]}…")
    for version, info in summary.versions.items():
        metrics = info.get("metrics", {})
        table.add_row(f"model v{version}", f"{info['run']}: " + ", ".join(
            f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if isinstance(v, float)))
    for stage in summary.stages:
        table.add_row(f"traffic {stage['stage']}", f"{stage['observed']} "
                      f"(p50 {stage['p50_ms']} ms, p99 {stage['p99_ms']} ms)")
    if summary.drift:
        table.add_row("drift", f"share drifted {summary.drift['share_drifted']:.2f}, "
                      f"dataset drift {summary.drift['dataset_drift']}")
    if summary.cost:
        table.add_row("cost", ", ".join(f"{t}: ${u:.6f}" for t, u in summary.cost["by_team"].items()))
    table.add_row("audit", f"{summary.audit.get('records')} records, "
                  f"chain {'OK' if summary.audit.get('ok') else 'BROKEN'}")
    table.add_row("timings (s)", ", ".join(f"{k.split('.')[0]}: {v}" for k, v in summary.timings_s.items()))
    console.print(table)
    tracking = cfg.active_profile().tracking
    mlflow_cmd = (f".venv/bin/mlflow ui --backend-store-uri sqlite:///{cfg.local_path(tracking.path)}"
                  if tracking.type == "sqlite" else f"open {tracking.uri}")
    console.print(f"Ray dashboard:  {dashboard_url}")
    console.print(f"Serve endpoint: POST {summary.endpoint}/predict")
    from urllib.parse import urlsplit

    from mlplat.deployment import ingress_url

    # The same route through the ingress `mlplat cluster up` started (replays what a dying
    # replica dropped).
    console.print(f"Via ingress:    POST {ingress_url(cfg)}{urlsplit(summary.endpoint).path}/predict")
    console.print(f"MLflow UI:      {mlflow_cmd}")
    console.print("Audit log:      .venv/bin/mlplat audit verify")
    from mlplat.secrets import token_file

    console.print(f"Act as yourself: export {cfg.security.token_env}=$(cat "
                  f"{token_file(cfg, 'alice')})   # then `mlplat deploy status {app.name}`, "
                  f"`mlplat rollback {app.name}`")
