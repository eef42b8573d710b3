from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli._common import ConfigOption, config, console


def demo(
    app: str = typer.Option("fraud", help="The app to run the walking skeleton for."),
    accounts: int = typer.Option(400, help="Synthetic accounts to generate."),
    requests: int = typer.Option(100, help="Prediction requests sent at each rollout stage."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Run every plane end to end on the local cluster. Example: `mlplat cluster up && mlplat demo`."""
    from mlplat.demo import run_demo

    run_demo(config(config_path), app_name=app, n_accounts=accounts,
             requests_per_stage=requests, console=console)
