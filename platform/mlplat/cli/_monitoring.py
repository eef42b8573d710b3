from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json

if TYPE_CHECKING:
    from mlplat.contracts.v1 import DriftReport
    from mlplat.governance import CostReport

drift_app = typer.Typer(help="Drift of served traffic. Example: `mlplat drift report fraud 2`.",
                        no_args_is_help=True)
cost_app = typer.Typer(help="Cost per team, model and inference. Example: `mlplat cost report`.",
                       no_args_is_help=True)


def _connect(cfg_path: Path | None):
    import ray

    cfg = config(cfg_path)
    if not ray.is_initialized():
        ray.init(address="auto", namespace="mlplat", logging_level=logging.ERROR, log_to_driver=False)
    return cfg


@drift_app.command("report")
def drift_report(
    model: str,
    version: str,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Compute drift of the current window vs the training reference. Example: `mlplat drift report fraud 2`."""
    import ray

    from mlplat.monitoring import get_drift_monitor

    monitor = get_drift_monitor(_connect(config_path))
    report = cast("DriftReport", ray.get(monitor.report.remote(model, version)))
    if json_out:
        print_json(report.model_dump(mode="json"))
        return
    table = Table("feature", "method", "score", "drifted")
    for name, f in report.features.items():
        table.add_row(name, f.method, f"{f.score:.4f}", "yes" if f.drifted else "")
    console.print(table)
    console.print(f"share drifted {report.share_drifted:.2f}; dataset drift: {report.dataset_drift}")


@cost_app.command("report")
def cost_report(config_path: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Cost by team, by model and per inference, from pool prices. Example: `mlplat cost report`."""
    import ray

    from mlplat.governance import get_cost_meter

    meter = get_cost_meter(_connect(config_path))
    report = cast("CostReport", ray.get(meter.report.remote()))
    if json_out:
        print_json(report.model_dump(mode="json"))
        return
    table = Table("team", "USD")
    for team, usd in sorted(report.by_team.items()):
        table.add_row(team, f"{usd:.6f}")
    console.print(table)
