"""`mlplat deploy`: Deploy, shift traffic, promote, roll back."""

from __future__ import annotations

import typer

deploy_app = typer.Typer(help="Deploy, shift traffic, promote, roll back.", no_args_is_help=True)


def rollback(model: str = typer.Argument(..., help="App/model name, e.g. fraud.")) -> None:
    """Return all traffic to the last good version of MODEL (`mlplat rollback fraud`)."""
    raise typer.Exit(2)  # replaced by the deployment plane's implementation this session
