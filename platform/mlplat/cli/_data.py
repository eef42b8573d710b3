"""`mlplat data` (skew reports) and `mlplat features` (apply, materialize, availability check)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json
from mlplat.errors import UserError

data_app = typer.Typer(
    help="Data plane: skew reports. Example: `mlplat data skew-report fraud --hours 24`.",
    no_args_is_help=True,
)
features_app = typer.Typer(
    help="Feature definitions and availability. Example: `mlplat features check fraud:3`.",
    no_args_is_help=True,
)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UserError(
            f"--{name} '{value}' is not an ISO time; use e.g. 2025-03-01T12:00:00+00:00."
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@data_app.command("skew-report")
def skew_report(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    since: str | None = typer.Option(None, help="Requests at or after this ISO time."),
    until: str | None = typer.Option(None, help="Requests before this ISO time."),
    hours: float | None = typer.Option(None, help="Only the last N hours (instead of --since)."),
    examples: int = typer.Option(10, help="How many of the worst mismatches to show."),
    log: str | None = typer.Option(None, help="Served-feature log (default <root>/feature_log/<app>)."),
    fail_above: float | None = typer.Option(
        None, help="Exit 1 when any feature's mismatch rate is above this (e.g. 0)."
    ),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Recompute served features offline as of each logged request and report mismatches.

    Example: `mlplat data skew-report fraud --hours 24 --fail-above 0`.
    """
    import ray

    from mlplat.data import skew_report as run

    cfg = config(config_path)
    start = _when(since, "since")
    if hours is not None:
        start = datetime.now(UTC) - timedelta(hours=hours)
    if not ray.is_initialized():
        ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
    report = run(cfg, app, since=start, until=_when(until, "until"), log_dir=log,
                 max_examples=examples)
    if json_out:
        print_json(report.model_dump(mode="json"))
    else:
        table = Table("feature", "compared", "mismatches", "rate", "served null", "offline null")
        for name, f in report.features.items():
            table.add_row(name, str(f.compared), str(f.mismatches), f"{f.mismatch_rate:.4f}",
                          str(f.served_null_only), str(f.offline_null_only))
        console.print(table)
        if report.worst:
            worst = Table("feature", "entity", "request time", "served", "offline", "rel. diff")
            for e in report.worst:
                rel = "null" if e.relative_difference is None else f"{e.relative_difference:.3g}"
                worst.add_row(e.feature, str(e.entity), e.request_ts.isoformat(), str(e.served),
                              str(e.offline), rel)
            console.print(worst)
        console.print(f"{report.rows_with_mismatch} of {report.rows} logged rows differ.")
    if fail_above is not None and any(
        f.mismatch_rate > fail_above for f in report.features.values()
    ):
        raise typer.Exit(1)


def _model_version(ref: str) -> tuple[str, str]:
    model, sep, version = ref.partition(":")
    if not sep or not model or not version:
        raise UserError(f"'{ref}' is not MODEL:VERSION; write e.g. fraud:3.")
    return model, version


@features_app.command("check")
def check(
    ref: str = typer.Argument(..., help="MODEL:VERSION, e.g. fraud:3."),
    app: str | None = typer.Option(None, help="App serving the model (default: the model name)."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Exit 1, listing what is missing, unless every feature of the version is defined and retained.

    Example: `mlplat features check fraud:3`.
    """
    from mlplat.data import check_features

    model, version = _model_version(ref)
    result = check_features(config(config_path), model, version, app=app)
    if json_out:
        print_json(result.model_dump(mode="json"))
    elif result.ok:
        console.print(
            f"{model}:{version}: all {len(result.checked)} features defined and retained "
            f">= {result.retention_days} days."
        )
    else:
        for line in result.missing:
            typer.echo(f"missing: {line}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@features_app.command("apply")
def apply(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Register the app's entities and feature views in its Feast registry (`feast apply`).

    Example: `mlplat features apply fraud`.
    """
    from mlplat.data import apply_features

    views = apply_features(config(config_path), app)
    console.print(f"applied {len(views)} feature views: {', '.join(views)}")


@features_app.command("materialize")
def materialize(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    end: str | None = typer.Option(None, help="Load rows up to this ISO time (default: now)."),
    start: str | None = typer.Option(
        None, help="Load rows from this ISO time (default: incremental, where the last run ended)."
    ),
    config_path: Path | None = ConfigOption,
) -> None:
    """Load the latest feature values into the online store (incremental by default).

    Example: `mlplat features materialize fraud`.
    """
    from mlplat.data import materialize as run

    written = run(config(config_path), app, end=_when(end, "end") or datetime.now(UTC),
                  start=_when(start, "start"))
    for view, n in written.items():
        console.print(f"{view}: {n} entities written")
