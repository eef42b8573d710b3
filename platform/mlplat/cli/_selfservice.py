"""Self-service commands: scaffold, check and render an app; generate its data, build its
dataset, train it and sweep it — the path docs/new-model.md walks a data scientist through."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json
from mlplat.errors import MlplatError, UserError

AddressOption = typer.Option(
    None, "--address", help="Ray dashboard URL (default: $RAY_ADDRESS, else the local cluster).")


def _fail(exc: MlplatError) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2 if isinstance(exc, UserError) else 1)


# --------------------------------------------------------------------------- mlplat models …


def new(
    name: str = typer.Argument(..., help="App and model name, e.g. churn."),
    team: str = typer.Option(..., "--team", help="Owning team (platform.yaml teams)."),
    template: str = typer.Option("tabular-classifier", "--template", help="Template to start from."),
    owner: str | None = typer.Option(None, "--owner", help="Contact (default: team's first owner)."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Scaffold apps/NAME from a template (`mlplat models new churn --team risk`)."""
    from mlplat.scaffold import new_app

    cfg = config(config_path)
    try:
        folder = new_app(cfg, name, team=team, template=template, owner=owner)
    except MlplatError as exc:
        _fail(exc)
    console.print(f"created {folder} from template '{template}':", highlight=False)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        console.print(f"  {path.relative_to(folder)}", highlight=False)
    console.print(f"next: `mlplat models check {name}`, then `mlplat data generate {name}`.",
                  highlight=False)


def check(
    name: str = typer.Argument(..., help="App name, e.g. churn."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Check APP before any cluster time: one line per problem (file, field, fix)."""
    from mlplat.scaffold import check_app

    problems = check_app(config(config_path), name)
    if json_out:
        print_json([p.__dict__ for p in problems])
    elif problems:
        for p in problems:
            typer.echo(str(p))  # one line each, never wrapped: grep-able
    else:
        console.print(f"{name}: ready (team, quota, SLOs, features, model, contract, generated "
                      "files)", highlight=False)
    if problems:
        raise typer.Exit(2)


def render(
    name: str = typer.Argument(..., help="App name, e.g. churn."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Regenerate APP's serve_config.yaml and contract.yaml from its app.py."""
    from mlplat.scaffold import render_app

    try:
        changed = render_app(config(config_path), name)
    except MlplatError as exc:
        _fail(exc)
    console.print(f"rendered {len(changed)} changed file(s): {[str(p) for p in changed]}",
                  highlight=False)
    console.print("cluster/ (RayService per app) is rendered by `mlplat cluster render`.",
                  highlight=False)


# --------------------------------------------------------------------------- mlplat data …


def generate(
    app: str = typer.Argument(..., help="App name, e.g. churn."),
    entities: int = typer.Option(400, "--entities", min=10, help="Entities (customers, accounts)."),
    days: int = typer.Option(10, "--days", min=1, help="Days of history."),
    seed: int = typer.Option(0, "--seed"),
    config_path: Path | None = ConfigOption,
) -> None:
    """Write APP's synthetic raw tables with its datagen.py (`mlplat data generate churn`)."""
    from mlplat.apps import load_app, load_app_module
    from mlplat.data import raw_dir

    cfg = config(config_path)
    try:
        manifest = load_app(app, cfg)
        datagen = load_app_module(manifest, "datagen")
    except MlplatError as exc:
        _fail(exc)
    paths = datagen.generate(Path(raw_dir(cfg, manifest)), entities, days=days, seed=seed,
                             end=datetime.now(UTC))
    for table, path in paths.items():
        console.print(f"{table}: {path}", highlight=False)


def build(
    app: str = typer.Argument(..., help="App name, e.g. churn."),
    labels: str | None = typer.Option(
        None, "--labels", help="Label set (parquet); default: the table datagen.py names."),
    address: str | None = AddressOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Build APP's point-in-time training dataset as a Ray job (jobs/build_dataset.py)."""
    from mlplat.apps import load_app, load_app_module
    from mlplat.data import raw_dir
    from mlplat.jobs import submit_job

    cfg = config(config_path)
    try:
        manifest = load_app(app, cfg)
        if labels is None:
            table = getattr(load_app_module(manifest, "datagen"), "LABEL_TABLE", "labels")
            labels = f"{raw_dir(cfg, manifest)}/{table}.parquet"
        job = submit_job(cfg, "jobs/build_dataset.py", ["--app", manifest.name, "--labels", labels],
                         team=manifest.team, model=manifest.name, pool="cpu", cpus=1,
                         address=address)
    except MlplatError as exc:
        _fail(exc)
    if not job.ok:
        console.print(f"[red]error:[/red] job {job.job_id} {job.status}:\n{job.logs[-3000:]}",
                      markup=False)
        raise typer.Exit(1)
    if json_out:
        print_json(job.result)
    else:
        console.print(f"job {job.job_id}: {job.result.get('rows')} rows → {job.result['manifest']}",
                      highlight=False)


# --------------------------------------------------------------------------- train / sweep


def _dataset(cfg: Any, app: Any, dataset: str | None) -> str:
    from mlplat.data import latest_dataset

    found = dataset or latest_dataset(cfg, app.name)
    if not found:
        raise UserError(f"no dataset built for '{app.name}' yet; run `mlplat data build "
                        f"{app.name}` or pass --dataset DIR.")
    return found


def _follow(client: Any, job_id: str, progress_of: Any, timeout_s: float) -> str:
    """Wait for a job, showing a progress bar fed by ``progress_of()``; returns its status."""
    from ray.job_submission import JobStatus
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("waiting for workers", total=None, info="")
        while True:
            status = client.get_job_status(job_id)
            now = progress_of()
            if now:
                bar.update(task, description="training", total=now["total"],
                           completed=now["done"], info=now.get("info", ""))
            if status in done:
                return str(status.value)
            if time.monotonic() > deadline:
                client.stop_job(job_id)
                raise MlplatError(f"job {job_id} did not finish in {timeout_s:.0f}s; stopped.")
            time.sleep(0.5)


def _submit_and_follow(cfg: Any, script: str, args: list[str], app: Any, cpus: float,
                       address: str | None, progress_of: Any, timeout_s: float,
                       extra: dict[str, str] | None = None) -> dict[str, Any]:
    from ray.job_submission import JobSubmissionClient

    from mlplat.jobs import dashboard_url, last_json_line, submit_job

    url = dashboard_url(cfg, address)
    job = submit_job(cfg, script, args, team=app.team, model=app.name, pool=app.training.pool,
                     cpus=cpus, wait=False, address=url)
    console.print(f"submitted {script} as Ray job {job.job_id} (team {app.team}); "
                  f"`ray job logs {job.job_id} --address {url}` for its logs", highlight=False)
    client = JobSubmissionClient(url)
    status = _follow(client, job.job_id, progress_of, timeout_s)
    logs = client.get_job_logs(job.job_id)
    if status != "SUCCEEDED":
        console.print(f"[red]error:[/red] job {job.job_id} {status}:", highlight=False)
        console.print(logs[-3000:], markup=False, highlight=False)
        raise typer.Exit(1)
    return last_json_line(logs)


def _tracking_hint(cfg: Any) -> str:
    from mlplat.experiment import tracking_uri

    return tracking_uri(cfg)


def train_cmd(
    app: str = typer.Argument(..., help="App name, e.g. churn."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="DDP workers."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    hidden_units: int | None = typer.Option(None, "--hidden-units", min=1),
    dataset: str | None = typer.Option(None, "--dataset", help="Default: the newest built one."),
    run_name: str | None = typer.Option(None, "--run-name", help="Reuse to resume a run."),
    promote: bool = typer.Option(
        False, "--promote", help="Point the 'staging' alias at the new version: the promotion "
        "controller gates it and rolls it out (shadow → canary → production)."),
    timeout_s: float = typer.Option(3600.0, "--timeout-s"),
    address: str | None = AddressOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Train APP as a Ray job with a progress bar (`mlplat train churn --epochs 20 --lr 1e-3`).

    Flags override the app's TrainingConfig for this run only; the MLflow run and the
    registered version are printed at the end.
    """
    from mlplat.apps import load_app
    from mlplat.training import apply_overrides, default_run_name, run_progress

    cfg = config(config_path)
    overrides = {k: v for k, v in {"epochs": epochs, "learning_rate": lr, "num_workers": workers,
                                   "batch_size": batch_size, "hidden_units": hidden_units}.items()
                 if v is not None}
    try:
        manifest = load_app(app, cfg)
        tcfg = apply_overrides(manifest.training, overrides)  # bad values fail here, not on Ray
        data = _dataset(cfg, manifest, dataset)
    except MlplatError as exc:
        _fail(exc)
    run = run_name or default_run_name(manifest)
    args = ["--app", app, "--dataset", data, "--run-name", run]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    if promote:
        args += ["--alias", "staging"]

    def progress() -> dict[str, Any] | None:
        now = run_progress(cfg, run)
        if now is None:
            return None
        return {"done": now["step"], "total": now["total_steps"], "info": f"loss {now['loss']:.4f}"}

    try:
        result = _submit_and_follow(cfg, "jobs/train.py", args, manifest,
                                    tcfg.num_workers * tcfg.cpus_per_worker, address, progress,
                                    timeout_s)
    except MlplatError as exc:
        _fail(exc)
    if json_out:
        print_json(result)
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.get("metrics", {}).items())
                        if isinstance(v, int | float))
    console.print(f"MLflow run {result['run_id']} ({_tracking_hint(cfg)})", highlight=False)
    console.print(f"registered {result['model']} version {result['version']}: {metrics}",
                  highlight=False)
    if promote:
        console.print(f"alias 'staging' → v{result['version']}: the promotion controller takes it "
                      f"from here (`mlplat deploy status {app}`)", highlight=False)


def sweep_cmd(
    app: str = typer.Argument(..., help="App name, e.g. churn."),
    trials: int = typer.Option(8, "--trials", min=1, help="Trials in total."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs per trial (max)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial"),
    dataset: str | None = typer.Option(None, "--dataset", help="Default: the newest built one."),
    timeout_s: float = typer.Option(3600.0, "--timeout-s"),
    address: str | None = AddressOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Run a Ray Tune sweep of APP under its team's quota (`mlplat sweep churn --trials 8`)."""
    from mlplat.apps import load_app
    from mlplat.training import sweep_progress, trial_concurrency

    cfg = config(config_path)
    try:
        manifest = load_app(app, cfg)
        concurrent = trial_concurrency(cfg, manifest.team, cpus_per_trial, manifest.training.pool)
        data = _dataset(cfg, manifest, dataset)
    except MlplatError as exc:
        _fail(exc)
    name = f"{manifest.name}-sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    args = ["--app", app, "--dataset", data, "--team", manifest.team, "--num-samples", str(trials),
            "--cpus-per-trial", f"{cpus_per_trial:g}", "--name", name]
    if epochs:
        args += ["--epochs", str(epochs)]
    console.print(f"sweep {name}: {trials} trials, at most {concurrent} at once "
                  f"(team {manifest.team} quota)", highlight=False)
    max_reports = trials * (epochs or manifest.training.epochs)

    def progress() -> dict[str, Any] | None:
        # Tune's per-trial reports (one per epoch; ASHA stops weak trials early, so the bar
        # may end short of its total).
        now = sweep_progress(cfg, name)
        if now is None:
            return None
        return {"done": now["reports"], "total": max_reports,
                "info": f"{now['trials']}/{trials} trials, best val_loss "
                        f"{now['best_val_loss']:.4f}"}

    try:
        result = _submit_and_follow(cfg, "jobs/sweep.py", args, manifest,
                                    min(trials, concurrent) * cpus_per_trial, address, progress,
                                    timeout_s)
    except MlplatError as exc:
        _fail(exc)
    if json_out:
        print_json(result)
        return
    console.print(f"MLflow parent run {result['parent_run_id']}: best {result['best_config']} "
                  f"→ {result['best_metrics']}", highlight=False)
    console.print(f"registered {result['model_name']} version {result['version']}", highlight=False)
