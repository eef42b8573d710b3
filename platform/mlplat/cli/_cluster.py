from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json

app = typer.Typer(help="The local multi-pool Ray cluster. Example: `mlplat cluster up`.",
                  no_args_is_help=True)


@app.command("up")
def up(config_path: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Start a local Ray cluster whose nodes emulate the pools in platform.yaml.

    Example: `mlplat cluster up`, then `ray job submit --address http://127.0.0.1:8265 -- …`.
    """
    from dataclasses import asdict

    from mlplat.cluster import cluster_up
    from mlplat.deployment import ingress_up

    cfg = config(config_path)
    with console.status("starting Ray nodes…"):
        state = cluster_up(cfg)
    with console.status("starting the ingress…"):
        ingress = ingress_up(cfg)
    if json_out:
        print_json({**asdict(state), "ingress_url": ingress.url})
        return
    table = Table("pool", "logical CPUs", "head")
    for node in state.nodes:
        table.add_row(node["pool"], f"{node['num_cpus']:g}", "yes" if node["is_head"] else "")
    console.print(table)
    console.print(f"GCS address: {state.gcs_address}")
    console.print(f"Ray dashboard / job API: {state.dashboard_url}")
    console.print(f"Serve HTTP (once something is deployed): {state.serve_url}")
    console.print(f"Ingress (replays requests a dying replica dropped): {ingress.url}")


@app.command("down")
def down(config_path: Path | None = ConfigOption) -> None:
    """Stop exactly the processes `mlplat cluster up` started. Example: `mlplat cluster down`."""
    from mlplat.cluster import cluster_down
    from mlplat.deployment import ingress_down

    cfg = config(config_path)
    ingress_down(cfg)
    stopped = cluster_down(cfg)
    console.print(f"stopped {stopped} Ray processes" if stopped else "no cluster was running")


@app.command("status")
def status(config_path: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Say whether the local cluster runs, and where. Example: `mlplat cluster status --json`."""
    from dataclasses import asdict

    from mlplat.cluster import cluster_status

    state = cluster_status(config(config_path))
    if json_out:
        print_json(asdict(state) if state else None)
    elif state is None:
        console.print("not running — start it with `mlplat cluster up`")
    else:
        console.print(f"running: {state.gcs_address}, dashboard {state.dashboard_url}, "
                      f"{len(state.nodes)} nodes")


_OutOption = typer.Option(
    None, "--out", help="Folder for the KubeRay manifests (default: cluster/ next to platform.yaml).")
_TfvarsOption = typer.Option(
    None, "--tfvars", help="Terraform variables file (default: "
    "terraform/environments/prod/platform.auto.tfvars.json next to platform.yaml).")
_ProfileOption = typer.Option("prod", "--profile", help="platform.yaml profile the pods run with.")
_ImageOption = typer.Option("rayproject/ray", "--image",
                            help="Image repository; tags follow pyproject's Ray pin.")
_CheckOption = typer.Option(False, "--check", help="Write nothing; exit 1 if the files are stale.")


@app.command("render")
def render(
    config_path: Path | None = ConfigOption,
    out: Path | None = _OutOption,
    tfvars: Path | None = _TfvarsOption,
    profile: str = _ProfileOption,
    image: str = _ImageOption,
    check: bool = _CheckOption,
) -> None:
    """Generate cluster/ (KubeRay, namespaces, quotas, priorities) and the Terraform tfvars.

    Example: `mlplat cluster render` after editing platform.yaml, an app.yaml or jobs/;
    `mlplat cluster render --check` in CI.
    """
    from mlplat.cluster import render_all, stale_files, write_rendered

    cfg = config(config_path)
    out = out or cfg.base_dir / "cluster"
    tfvars = tfvars or cfg.base_dir / "terraform/environments/prod/platform.auto.tfvars.json"
    rendered = render_all(cfg, profile=profile, image_repository=image)
    if check:
        stale = stale_files(rendered, out, tfvars)
        for path in stale:
            console.print(f"stale: {path}")
        if stale:
            console.print("run `mlplat cluster render` and commit the result")
            raise typer.Exit(1)
        console.print("cluster/ and tfvars are up to date")
        return
    changed = write_rendered(rendered, out, tfvars)
    console.print(f"{len(rendered.cluster) + 1} files rendered, {len(changed)} changed")
    for path in changed:
        console.print(f"  {path}")
