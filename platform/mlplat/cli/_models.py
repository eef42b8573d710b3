"""`mlplat models`: Registered models: versions, cards, deletion guard."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="Registered models: versions, cards, deletion guard.", no_args_is_help=True)
