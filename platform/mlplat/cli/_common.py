from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mlplat.config import PlatformConfig, load_config

console = Console()

ConfigOption = typer.Option(
    None, "--config", "-c", help="platform.yaml to use (default: $MLPLAT_CONFIG or ./platform.yaml)."
)
JsonOption = typer.Option(False, "--json", help="Print JSON for machines instead of a table.")


def config(path: Path | None) -> PlatformConfig:
    return load_config(path)


def caller(cfg: PlatformConfig) -> str:
    """Who runs this command: the person whose token is in ``security.token_env``
    ($MLPLAT_TOKEN) — never a name typed on the command line.

    Commands that act through the cluster (deploy, rollback) send the token and let the
    platform resolve it there; commands that write directly (model cards, audit purge) resolve
    it here, so the machine running them needs the people's token variables (locally:
    generated under ``<root>/secrets/``).
    """
    from mlplat.secrets import caller_token, identify

    return identify(cfg, caller_token(cfg)).name


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
