"""`mlplat catalog`: Search the model catalog."""

from __future__ import annotations

import typer

catalog_app = typer.Typer(help="Search the model catalog.", no_args_is_help=True)
