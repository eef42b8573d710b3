from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli._common import ConfigOption, config, console, print_json

app = typer.Typer(help="Platform jobs on Ray. Example: `mlplat jobs submit jobs/train.py --team risk "
                  "--model fraud -- --app fraud --dataset DIR`.", no_args_is_help=True)


@app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    script: str = typer.Argument(..., help="Entrypoint under jobs/, e.g. jobs/train.py."),
    team: str = typer.Option(..., help="Team charged for the job (platform.yaml teams)."),
    model: str = typer.Option(..., help="Model the job works for."),
    pool: str = typer.Option("cpu", help="Pool the job's workers run on."),
    cpus: float = typer.Option(1.0, help="CPUs the workers hold (cost attribution)."),
    wait: bool = typer.Option(True, help="Wait for the job and print its logs."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Submit `python SCRIPT ARGS…` with team/model metadata; arguments after `--` go to SCRIPT."""
    from mlplat.jobs import submit_job

    result = submit_job(config(config_path), script, list(ctx.args), team=team, model=model,
                        pool=pool, cpus=cpus, wait=wait)
    if result.logs:
        console.print(result.logs, markup=False, highlight=False)
    print_json({"job_id": result.job_id, "status": result.status, "result": result.result})
    if wait and not result.ok:
        raise typer.Exit(1)
