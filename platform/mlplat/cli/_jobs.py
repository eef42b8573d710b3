from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json

app = typer.Typer(
    help="Platform jobs on Ray, through the team-quota priority queue. Example: "
    "`mlplat jobs submit jobs/train.py --team risk --model fraud --priority batch-high "
    "--pool training-spot --cpus 2 -- --app fraud --dataset DIR`; `mlplat jobs list`.",
    no_args_is_help=True,
)


@app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    script: str = typer.Argument(..., help="Entrypoint under jobs/, e.g. jobs/train.py."),
    team: str = typer.Option(..., help="Team charged for the job (platform.yaml teams)."),
    model: str = typer.Option(..., help="Model the job works for."),
    priority: str = typer.Option(
        "", help="serving-critical | batch-high | batch-low (platform.yaml "
        "scheduling.priority_classes; default: scheduling.default_priority)."
    ),
    pool: str = typer.Option("cpu", help="Pool the job's workers run on."),
    cpus: float = typer.Option(1.0, help="CPUs the workers hold on the pool (quota, cost)."),
    gpus: float = typer.Option(0.0, help="GPUs the workers hold on the pool (quota)."),
    memory_gib: float = typer.Option(0.0, help="Memory the workers hold (quota)."),
    wait: bool = typer.Option(True, help="Wait for the job and print its logs."),
    timeout_s: float = typer.Option(3600.0, help="With --wait: give up after this long."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Queue `python SCRIPT ARGS…` for TEAM; it starts when it fits the team's quota.

    Arguments after `--` go to SCRIPT. A job larger than the team's whole quota is refused
    here, before any cluster time.
    """
    from mlplat.jobs import dashboard_url, job_root, last_json_line
    from mlplat.scheduling import JobRequest, enqueue, validate_request, wait_queued

    cfg = config(config_path)
    request = JobRequest(team=team, script=script, args=list(ctx.args), model=model,
                         priority=priority, pool=pool, cpus=cpus, gpus=gpus,
                         memory_gib=memory_gib)
    validate_request(cfg, request)
    job_root(cfg, script)
    entry = enqueue(cfg, request)
    console.print(f"queued {entry.id} ({entry.priority}): {entry.state} {entry.reason}",
                  markup=False, highlight=False)
    if not wait:
        print_json({"job_id": entry.id, "status": entry.state, "reason": entry.reason})
        return
    done = wait_queued(cfg, entry.id, timeout_s=timeout_s)
    logs = ""
    if done.ray_job_id:
        from ray.job_submission import JobSubmissionClient

        logs = JobSubmissionClient(dashboard_url(cfg)).get_job_logs(done.ray_job_id)
        console.print(logs, markup=False, highlight=False)
    print_json({"job_id": done.id, "status": done.state, "result": last_json_line(logs)})
    if done.state != "SUCCEEDED":
        raise typer.Exit(1)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M:%S")


@app.command("list")
def list_jobs(
    all_jobs: bool = typer.Option(False, "--all", help="Include finished jobs."),
    as_json: bool = JsonOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Queued and running jobs, with why each waiting job waits. Example: `mlplat jobs list`."""
    from mlplat.scheduling import TERMINAL_STATES, list_queue

    entries = [e for e in list_queue(config(config_path))
               if all_jobs or e.state not in TERMINAL_STATES]
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    table = Table("id", "team", "priority", "pool", "cpus", "state", "submitted (UTC)", "reason")
    for e in entries:
        table.add_row(e.id, e.team, e.priority, e.pool, f"{e.cpus:g}", e.state,
                      _when(e.submitted_at), e.reason)
    console.print(table)


@app.command("cancel")
def cancel(
    job_id: str = typer.Argument(..., help="Queue id from `mlplat jobs list`."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Cancel a job that is still queued. Example: `mlplat jobs cancel mlplat-risk-0a1b2c3d4e`."""
    from mlplat.scheduling import job_queue
    from mlplat.scheduling._service import _connect

    cfg = config(config_path)
    _connect()
    import ray

    entry: Any = ray.get(job_queue(cfg).cancel.remote(job_id))
    print_json(entry.to_json())
