"""`mlplat lineage`: Show lineage from raw data to deployments."""

from __future__ import annotations

import typer

lineage_app = typer.Typer(help="Show lineage from raw data to deployments.", no_args_is_help=True)
