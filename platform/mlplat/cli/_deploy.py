"""`mlplat deploy`: Deploy, shift traffic, promote, roll back.

Thin wrappers: `apply` runs Ray's own `serve deploy` on the app's serve config; the other verbs
call `mlplat.deployment` (the promotion controller actor for promote/override/rollback).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json
from mlplat.cluster import CONTROLLER_ACTOR
from mlplat.errors import MlplatError, UserError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig

deploy_app = typer.Typer(
    help="Deploy, shift traffic, promote, roll back. Example: `mlplat deploy apply fraud`.",
    no_args_is_help=True)

ServeConfigOption = typer.Option(
    None, "--serve-config", help="Serve config (default: apps/<app>/serve_config.yaml).")
WeightsArgument = typer.Argument(..., help="VERSION=PERCENT pairs summing to 100, e.g. 3=90 4=10.")
ControllerOption = typer.Option(CONTROLLER_ACTOR, "--controller",
                                help="Promotion-controller actor name.")
OverrideOption = typer.Option(
    False, "--override", help="As an incident commander: accept what could not be judged "
    "(gates without data; versions that have not earned traffic). Audited.")


def _token(cfg: PlatformConfig) -> str:
    """The caller's own token ($MLPLAT_TOKEN): the platform resolves who it is and audits them."""
    from mlplat.secrets import caller_token

    try:
        return caller_token(cfg)
    except MlplatError as exc:
        _fail(exc)
        raise


def _connect(cfg_path: Path | None) -> PlatformConfig:
    import ray

    from mlplat.cluster import cluster_status

    cfg = config(cfg_path)
    if not ray.is_initialized():
        state = cluster_status(cfg)
        ray.init(address=state.gcs_address if state else "auto", namespace="mlplat",
                 logging_level=logging.ERROR, log_to_driver=False)
    return cfg


def _fail(exc: MlplatError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2 if isinstance(exc, UserError) else 1)


@deploy_app.command("apply")
def apply(
    app: str = typer.Argument(..., help="App under apps/, e.g. fraud."),
    serve_config: Path | None = ServeConfigOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Deploy APP with Ray's `serve deploy` on its serve config (e.g. `mlplat deploy apply fraud`).

    Equivalent to `serve deploy apps/fraud/serve_config.yaml --address <dashboard>`; the
    config's import path is `mlplat.deployment.serve_app:build`.
    """
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from mlplat.apps import load_app
    from mlplat.cluster import cluster_status
    from mlplat.jobs import dashboard_url

    cfg = config(config_path)
    try:
        manifest = load_app(app, cfg)
    except MlplatError as exc:
        _fail(exc)
    path = serve_config or manifest.path / "serve_config.yaml"
    try:
        ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:  # schema errors name the key; check before touching the cluster
        console.print(f"[red]error:[/red] {path}: {exc}")
        raise typer.Exit(2) from exc
    state = cluster_status(cfg)
    address = state.dashboard_url if state else dashboard_url(cfg)
    serve_bin = shutil.which("serve", path=str(Path(sys.executable).parent)) or "serve"
    result = subprocess.run([serve_bin, "deploy", str(path), "--address", address])
    if result.returncode != 0:
        raise typer.Exit(result.returncode)
    console.print(f"submitted {path} to {address}; `serve status` shows progress.")


@deploy_app.command("weights")
def weights(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    weight: list[str] = WeightsArgument,
    shadow: str | None = typer.Option(None, "--shadow", help="Version to mirror traffic to."),
    reason: str = typer.Option(..., "--reason", help="Why (audited)."),
    override: bool = OverrideOption,
    controller: str = ControllerOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Set the live split by hand (`mlplat deploy weights fraud 3=90 4=10 --reason 'test'`).

    Only versions that passed their gates and shadow stage (or are live already) may get
    weight; anything else is refused naming the gate, unless an incident commander overrides.
    """
    from mlplat.contracts.v1 import TrafficSplit
    from mlplat.deployment import set_traffic

    parsed: dict[str, float] = {}
    for pair in weight:
        version, sep, pct = pair.partition("=")
        try:
            parsed[version] = float(pct)
        except ValueError:
            sep = ""
        if not sep or not version:
            console.print(f"[red]error:[/red] weight {pair!r} is not VERSION=PERCENT (e.g. 3=90).")
            raise typer.Exit(2)
    cfg = _connect(config_path)
    try:
        split = TrafficSplit(weights=parsed, shadow=shadow)
    except ValueError as exc:
        console.print(f"[red]error:[/red] weights: {exc}")
        raise typer.Exit(2) from exc
    try:
        set_traffic(cfg, app, split, token=_token(cfg), reason=reason, override=override,
                    controller=controller)
    except MlplatError as exc:
        _fail(exc)
    console.print(f"{app}: split now {split.weights} (shadow {split.shadow})")


@deploy_app.command("promote")
def promote_cmd(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    version: str = typer.Argument(..., help="Registered version to promote."),
    reason: str = typer.Option(..., "--reason", help="Why (audited)."),
    override: bool = OverrideOption,
    controller: str = ControllerOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Gate VERSION and start its rollout (`mlplat deploy promote fraud 4 --reason retrain`).

    A never-deployed app gets its first release; its drift gate cannot be judged before any
    traffic, so an incident commander releases it with `--override`.
    """
    from mlplat.deployment import promote

    cfg = _connect(config_path)
    try:
        out = promote(cfg, app, version, token=_token(cfg), reason=reason, override=override,
                      controller=controller)
    except MlplatError as exc:
        _fail(exc)
    _print_rollout(out, json_out)
    if out["status"] == "rejected":
        raise typer.Exit(2)


@deploy_app.command("override")
def override_cmd(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    reason: str = typer.Option(..., "--reason", help="Incident and why (audited)."),
    controller: str = ControllerOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Skip the shadow minimum of APP's rollout (`mlplat deploy override fraud --reason
    'INC-42 hotfix'`); needs an incident commander's token."""
    from mlplat.deployment import override

    cfg = _connect(config_path)
    try:
        out = override(cfg, app, token=_token(cfg), reason=reason, controller=controller)
    except MlplatError as exc:
        _fail(exc)
    console.print(f"{app}: shadow minimum overridden by {out['override_by']}")


@deploy_app.command("status")
def status_cmd(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    controller: str = ControllerOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """The app's last rollout and live SLO windows (`mlplat deploy status fraud`)."""
    from mlplat.deployment import promotion_status

    cfg = _connect(config_path)
    try:
        out = promotion_status(cfg, app, controller=controller)
    except MlplatError as exc:
        _fail(exc)
    if json_out:
        print_json(out)
        return
    console.print(f"{app}: last good version {out['last_good']}")
    if out.get("rollout"):
        _print_rollout(out["rollout"], False)


@deploy_app.command("shadow-report")
def shadow_report(
    app: str = typer.Argument(..., help="App name, e.g. fraud."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Live vs shadow: agreement, score deltas, per-version latency and errors
    (`mlplat deploy shadow-report fraud`)."""
    from mlplat.apps import load_app
    from mlplat.deployment import LATENCY_BUCKETS_MS, p99_of, router_stats

    cfg = _connect(config_path)
    try:
        tabular = load_app(app, cfg)
    except MlplatError as exc:  # an LLM app's router answers with a text comparison instead
        _llm_shadow_report(cfg, app, json_out, exc)
        return
    try:
        stats = router_stats(cfg, tabular)
    except MlplatError as exc:
        _fail(exc)
    shadow = stats["shadow"]
    report: dict[str, Any] = {
        "app": app, "split": stats["split"], "shadow": shadow,
        "versions": {v: {"requests": c["requests"], "errors": c["errors"],
                         "p99_ms": p99_of(c["buckets"])} for v, c in stats["slo"].items()},
        "replica": stats["replica"]["replica_id"],
    }
    if json_out:
        print_json(report)
        return
    console.print(f"shadow version {shadow['version']}: {shadow['comparisons']} comparisons, "
                  f"agreement {shadow['agreement_rate']}, mean |live − shadow| "
                  f"{shadow['mean_abs_diff']}, dropped {shadow['dropped']}, failed "
                  f"{shadow['failed']} (replica {report['replica']}; per-replica counters)")
    table = Table("version", "calls", "errors", f"p99 ms (≤ bucket of {LATENCY_BUCKETS_MS[:3]}…)")
    for v, row in sorted(report["versions"].items()):
        table.add_row(v, str(row["requests"]), str(row["errors"]), str(row["p99_ms"]))
    console.print(table)


def _llm_shadow_report(cfg: Any, app: str, json_out: bool, not_tabular: MlplatError) -> None:
    """The text comparison of an LLM app's shadow (exact match, token-length delta, word
    similarity) and per-version TTFT / inter-token p99s, from one router replica."""
    from mlplat.llm import llm_shadow_report

    try:
        report = llm_shadow_report(cfg, app)
    except Exception:  # no LLM router by that name either: say why the app is unknown
        _fail(not_tabular)
    if json_out:
        print_json({"app": app, **report})
        return
    console.print(f"shadow of {app}: dropped {report['dropped']}, failed {report['failed']}, "
                  f"in flight {report['in_flight']} (one replica's counters)")
    for pair, totals in sorted(report["comparisons"].items()):
        console.print(f"  {pair}: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    table = Table("version", "side", "requests", "errors", "p99 ms", "TTFT p99 ms",
                  "inter-token p99 ms")
    for side in ("live", "shadow"):
        for v, row in sorted(report[side].items()):
            table.add_row(v, side, str(row["requests"]), str(row["errors"]), str(row["p99_ms"]),
                          str(row.get("ttft_p99_ms")), str(row.get("itl_p99_ms")))
    console.print(table)


def _print_rollout(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(out)
        return
    if out["baseline"] is None:
        console.print(f"first release of {out['app']}: v{out['candidate']}, status {out['status']}"
                      + (f", serving at {out['endpoint']}" if out.get("endpoint") else ""))
    else:
        console.print(f"rollout {out['id']}: v{out['baseline']} → v{out['candidate']}, "
                      f"stage {out['stage']}, status {out['status']} (source {out['source']})")
    for h in out["history"]:
        if h["event"] == "gates":
            for g in h["gates"]:
                mark = "PASS" if g["passed"] else "FAIL"
                console.print(f"  gate {g['name']}: {mark} — {g['detail']}")
        else:
            console.print("  " + json.dumps({k: v for k, v in h.items() if k != "split"},
                                            default=str)[:300])


def rollback(
    model: str = typer.Argument(..., help="App/model name, e.g. fraud."),
    reason: str = typer.Option("manual rollback", "--reason", help="Why (audited)."),
    controller: str = ControllerOption,
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Return all traffic to the last good version of MODEL (`mlplat rollback fraud`)."""
    from mlplat.deployment import rollback as do_rollback

    cfg = _connect(config_path)
    try:
        out = do_rollback(cfg, model, token=_token(cfg), reason=reason, controller=controller)
    except MlplatError as exc:
        _fail(exc)
    _print_rollout(out, json_out)
