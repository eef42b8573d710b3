"""The `mlplat` command: `mlplat <noun> <verb>`. Thin: every command calls a plane's API."""

from __future__ import annotations

import sys

import typer

from mlplat.cli import (
    _audit,
    _catalog,
    _cluster,
    _config,
    _data,
    _demo,
    _deploy,
    _jobs,
    _lineage,
    _models,
    _monitoring,
    _selfservice,
)
from mlplat.errors import MlplatError

app = typer.Typer(
    name="mlplat",
    help="mlplat — a Ray-native ML platform. Example: `mlplat cluster up && mlplat demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_cluster.app, name="cluster")
app.add_typer(_config.app, name="config")
app.add_typer(_jobs.app, name="jobs")
app.add_typer(_audit.app, name="audit")
app.add_typer(_monitoring.drift_app, name="drift")
app.add_typer(_monitoring.cost_app, name="cost")
app.add_typer(_catalog.catalog_app, name="catalog")
app.add_typer(_lineage.lineage_app, name="lineage")
app.add_typer(_models.models_app, name="models")
app.add_typer(_deploy.deploy_app, name="deploy")
app.add_typer(_data.data_app, name="data")
app.add_typer(_data.features_app, name="features")
_models.models_app.command("new")(_selfservice.new)
_models.models_app.command("check")(_selfservice.check)
_models.models_app.command("render")(_selfservice.render)
_data.data_app.command("generate")(_selfservice.generate)
_data.data_app.command("build")(_selfservice.build)
app.command("train")(_selfservice.train_cmd)
app.command("sweep")(_selfservice.sweep_cmd)
app.command("rollback")(_deploy.rollback)
app.command("demo")(_demo.demo)


def main() -> None:
    """Console-script entry: user errors print one actionable line and exit 2, not a traceback."""
    try:
        app()
    except MlplatError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
