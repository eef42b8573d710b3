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


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
