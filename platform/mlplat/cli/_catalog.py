"""`mlplat catalog`: Search the model catalog."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json

catalog_app = typer.Typer(
    help='Search the model catalog. Example: `mlplat catalog search "team:risk stage:production"`.',
    no_args_is_help=True,
)


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _split(weights: dict[str, float] | None, shadow: str | None, source: str) -> str:
    if not weights:
        return "unknown"
    text = " ".join(f"v{v}:{w:g}%" for v, w in sorted(weights.items()))
    return text + (f" shadow:v{shadow}" if shadow else "") + f" ({source})"


@catalog_app.command("search")
def search(
    query: str = typer.Argument("", help='field:value terms and free words, e.g. "team:risk '
                                "stage:production\"; fields: team owner stage drift model "
                                "version feature; value* is a prefix."),
    limit: int = typer.Option(100, min=1, max=1000, help="At most this many models."),
    refresh: bool = typer.Option(False, "--refresh", help="Rebuild the index from the registry "
                                 "first."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Find models. Example: `mlplat catalog search "team:risk stage:production" --json`."""
    from mlplat.governance import Catalog, default_catalog_path, refresh_catalog

    cfg = config(config_path)
    cat = Catalog(default_catalog_path(cfg))
    if refresh or len(cat) == 0:
        refresh_catalog(cfg, catalog=cat)
    found = cat.search(query, limit=limit)
    if json_out:
        print_json([json.loads(e.model_dump_json()) for e in found])
        return
    table = Table("model", "team", "owner", "stage", "versions by stage", "traffic",
                  "cost/inference", "drift", "lineage")
    for e in found:
        table.add_row(e.model, e.team, e.owner, e.stage,
                      " ".join(f"{s}=v{v}" for s, v in e.stages.items()) or "-",
                      _split(e.traffic_split, e.shadow_version, e.traffic_source),
                      _money(e.cost_per_inference_usd), e.drift_status, e.links.get("lineage", ""))
    console.print(table)
    console.print(f"{len(found)} model(s)")


@catalog_app.command("show")
def show(model: str = typer.Argument(..., help="Model name."),
         config_path: Path | None = ConfigOption) -> None:
    """Print one model's full catalog entry as JSON. Example: `mlplat catalog show fraud`."""
    from mlplat.governance import Catalog, default_catalog_path

    print_json(json.loads(Catalog(default_catalog_path(config(config_path))).get(model)
                          .model_dump_json()))


_MODELS_ARG = typer.Argument(None, help="Only these models (default: all).")


@catalog_app.command("refresh")
def refresh_cmd(
    models: list[str] | None = _MODELS_ARG,
    live: bool = typer.Option(False, "--live", help="Connect to the Ray cluster for the live "
                              "split, cost and drift."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Rebuild the index from the registry. Example: `mlplat catalog refresh --live`."""
    from mlplat.governance import refresh_catalog

    cfg = config(config_path)
    if live:
        import logging

        import ray

        ray.init(address="auto", namespace="mlplat", logging_level=logging.ERROR,
                 log_to_driver=False)
    n = refresh_catalog(cfg, models or None)
    console.print(f"catalog refreshed: {n} model(s)")


@catalog_app.command("serve")
def serve(
    port: int = typer.Option(8090, help="Port on 127.0.0.1."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Serve the catalog's JSON API (GET /models?q=…, /models/NAME). Example: `mlplat catalog serve`."""
    import uvicorn

    from mlplat.governance import catalog_asgi_app

    uvicorn.run(catalog_asgi_app(config(config_path)), host="127.0.0.1", port=port)
