"""`mlplat lineage`: Show lineage from raw data to deployments."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplat.cli._common import ConfigOption, config, print_json
from mlplat.errors import UserError

lineage_app = typer.Typer(
    help="Show lineage from raw data to deployments. Example: `mlplat lineage show fraud:3`.",
    no_args_is_help=True,
)

FORMATS = ("text", "mermaid", "json")
_DATASET_DIR = typer.Option(None, "--dataset-dir",
                            help="Extra folder with dataset manifests (repeatable).")


@lineage_app.command("show")
def show(
    ref: str = typer.Argument(..., help="MODEL:VERSION (fraud:3) or MODEL@ALIAS "
                              "(fraud@production)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, mermaid or json."),
    dataset_dir: list[Path] | None = _DATASET_DIR,
    config_path: Path | None = ConfigOption,
) -> None:
    """Print what a model version came from and where it served.

    Example: `mlplat lineage show fraud:3 --format mermaid > lineage.mmd`.
    """
    from mlplat.governance import lineage_graph, parse_lineage_ref

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {list(FORMATS)}.")
    model, version = parse_lineage_ref(ref)
    graph = lineage_graph(config(config_path), model, version, dataset_dirs=dataset_dir or None)
    if fmt == "json":
        print_json(graph.to_json())
    else:
        typer.echo(graph.to_mermaid() if fmt == "mermaid" else graph.to_text())
