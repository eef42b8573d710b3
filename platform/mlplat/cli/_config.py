from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, config, console

app = typer.Typer(help="platform.yaml. Example: `mlplat config validate`.", no_args_is_help=True)


@app.command("validate")
def validate(config_path: Path | None = ConfigOption) -> None:
    """Validate platform.yaml and summarize teams and pools. Example: `mlplat config validate`."""
    cfg = config(config_path)
    pools = Table("pool", "instance", "capacity", "USD/hour", "local nodes")
    for name, pool in cfg.pools.items():
        pools.add_row(name, pool.instance_type, pool.capacity, f"{pool.price_usd_per_hour:.3f}",
                      str(pool.local.nodes))
    console.print(pools)
    console.print(f"teams: {', '.join(sorted(cfg.teams))}; profile: {cfg.active_profile_name()}")
    console.print(f"{cfg.source_path}: valid")
