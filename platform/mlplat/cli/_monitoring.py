from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json
from mlplat.errors import UserError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.contracts.v1 import DriftReport
    from mlplat.governance import CostReport
    from mlplat.monitoring import KpiReport

drift_app = typer.Typer(help="Drift of served traffic. Example: `mlplat drift report fraud 2`.",
                        no_args_is_help=True)
cost_app = typer.Typer(help="Cost per team, model and inference. Example: "
                       "`mlplat cost report --since 1d --by model`.", no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str | None) -> float | None:
    """``"1d"`` → the Unix time one day ago; ``"90m"``, ``"12h"``, ``"2w"`` likewise.

    Example:
        >>> round(time.time() - parse_since("1h"))
        3600
    """
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if not match:
        raise UserError(f"--since {value!r} is not a duration; use a number and a unit s, m, h, "
                        "d or w, e.g. --since 1d or --since 12h.")
    return time.time() - float(match.group(1)) * _UNITS[match.group(2)]


def _connect(cfg_path: Path | None) -> PlatformConfig:
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
    """Close the current window and show its drift vs the training reference. Example: `mlplat drift report fraud 2`."""
    import ray

    from mlplat.monitoring import get_drift_monitor

    monitor = get_drift_monitor(_connect(config_path))
    report = cast("DriftReport", ray.get(monitor.report.remote(model, version)))
    if json_out:
        print_json(report.model_dump(mode="json"))
        return
    table = Table("feature", "method", "score", "PSI", "drifted")
    for name, f in report.features.items():
        table.add_row(name, f.method, f"{f.score:.4f}", "" if f.psi is None else f"{f.psi:.3f}",
                      "yes" if f.drifted else "")
    console.print(table)
    console.print(f"share drifted {report.share_drifted:.2f} ({report.severity}); dataset drift: "
                  f"{report.dataset_drift}")
    if report.prediction_drift is not None:
        console.print(f"prediction drift: {report.prediction_drift.method} "
                      f"{report.prediction_drift.score:.4f} "
                      f"{'DRIFTED' if report.prediction_drift.drifted else 'ok'}")
    if report.evidently_report:
        console.print(f"full Evidently report: {report.evidently_report}.html")


@drift_app.command("kpi")
def drift_kpi(model: str, config_path: Path | None = ConfigOption,
              json_out: bool = JsonOption) -> None:
    """Business KPI per window and version next to drift. Example: `mlplat drift kpi fraud`."""
    import ray

    from mlplat.monitoring import get_drift_monitor

    monitor = get_drift_monitor(_connect(config_path))
    kpi = cast("KpiReport", ray.get(monitor.kpi.remote(model)))
    if json_out:
        print_json(kpi.model_dump(mode="json"))
        return
    table = Table("version", "window end", "drift share", "outcomes", "caught $", "FP cost $",
                  "recall")
    for w in kpi.windows:
        table.add_row(w.version, w.window_end.isoformat(timespec="seconds"),
                      f"{w.share_drifted:.2f}", str(w.outcomes), f"{w.fraud_caught_usd:,.2f}",
                      f"{w.false_positive_cost_usd:,.2f}",
                      "" if w.recall is None else f"{w.recall:.2f}")
    console.print(table)
    console.print(f"drift ↔ KPI change correlation: {kpi.drift_kpi_correlation}")


@cost_app.command("report")
def cost_report(
    since: str | None = typer.Option(None, help="Only spend in this period, e.g. 1d, 12h, 2w."),
    by: str = typer.Option("team", help="Group by team, model, pool, kind or capacity."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Cost by team or model, per inference and against budgets. Example: `mlplat cost report --since 1d --by model`."""
    import ray

    from mlplat.governance import get_cost_meter

    groups = ("team", "model", "pool", "kind", "capacity")
    if by not in groups:
        raise UserError(f"--by {by!r} is not one of {list(groups)}.")
    start = parse_since(since)
    meter = get_cost_meter(_connect(config_path))
    report = cast("CostReport", ray.get(meter.report.remote(since=start)))
    if json_out:
        print_json(report.model_dump(mode="json"))
        return
    table = Table(by, "USD", title=f"cost {'since ' + since if since else '(all time)'}")
    for key, usd in sorted(getattr(report, f"by_{by}").items(), key=lambda kv: -kv[1]):
        table.add_row(key, f"{usd:.6f}")
    console.print(table)
    for model, usd in sorted(report.per_inference_usd.items()):
        console.print(f"cost per inference, {model}: ${usd:.8f}")
    for model, usd in sorted(report.per_1k_tokens_usd.items()):
        console.print(f"cost per 1k tokens, {model}: ${usd:.8f} "
                      f"({report.tokens[model]} tokens)")
    for team, b in sorted(report.budgets.items()):
        if b["week_usd"]:
            console.print(f"{team}: ${b['week_usd']:.2f} of ${b['budget_usd_per_week']:.0f} "
                          f"weekly budget ({b['used_share']:.1%})")
