"""`mlplat data`: Data plane: skew reports."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Data plane: skew reports.", no_args_is_help=True)
features_app = typer.Typer(help="Feature availability for models.", no_args_is_help=True)
