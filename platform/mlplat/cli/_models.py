"""`mlplat models`: Registered models: versions, cards, deletion guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, caller, config, console, print_json
from mlplat.errors import UserError

models_app = typer.Typer(help="Registered models: versions, cards, deletion guard.", no_args_is_help=True)
card_app = typer.Typer(help="Model cards (stored in the registry, one revision per edit).",
                       no_args_is_help=True)
models_app.add_typer(card_app, name="card")

SetOption = typer.Option([], "--set", help="FIELD=VALUE (owner, description, intended_use, "
                         "limitations); repeatable.")
CertOption = typer.Option(None, help="TLS certificate (Kubernetes needs TLS).")
KeyOption = typer.Option(None, help="TLS key.")


def _ref(ref: str) -> tuple[str, str]:
    model, sep, version = ref.partition(":")
    if not sep or not model or not version.isdigit():
        raise UserError(f"Expected MODEL:VERSION such as fraud:3, got {ref!r}.")
    return model, version


@models_app.command("versions")
def versions(model: str, config_path: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Every version of MODEL with aliases and card hash. Example: `mlplat models versions fraud`."""
    from mlplat.experiment import list_versions

    rows = list_versions(config(config_path), model)
    if json_out:
        print_json(rows)
        return
    table = Table("version", "aliases", "complete", "card_sha256", "dataset_sha256", "run_id")
    for r in rows:
        t = r["tags"]
        table.add_row(r["version"], ",".join(r["aliases"]), str(r["complete"]),
                      t.get("card_sha256", "")[:12], t.get("dataset_sha256", "")[:12],
                      str(r["run_id"])[:12])
    console.print(table)


@card_app.command("show")
def card_show(
    ref: str = typer.Argument(..., help="MODEL:VERSION, e.g. fraud:3"),
    revision: int | None = typer.Option(None, help="A past revision (default: the newest)."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Print a verified model card. Example: `mlplat models card show fraud:3 --json`."""
    from mlplat.experiment import card_sha256, get_model_card

    model, version = _ref(ref)
    card = get_model_card(config(config_path), model, version, revision=revision)
    if json_out:
        print_json({**card.model_dump(mode="json"), "sha256": card_sha256(card)})
        return
    console.print(f"[bold]{card.model} v{card.version}[/bold] revision {card.revision} "
                  f"(sha256 {card_sha256(card)[:12]}…, verified)")
    for name in ("team", "owner", "description", "intended_use", "limitations",
                 "training_dataset_sha256", "evaluation_dataset_sha256"):
        console.print(f"  {name}: {getattr(card, name)}")
    console.print("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(card.metrics.items())))
    if card.shap_summary:
        console.print("  SHAP (mean |value|): " + ", ".join(
            f"{a.feature}={a.mean_abs_shap:.4f}" for a in card.shap_summary[:8]))
    if card.fairness:
        table = Table("feature", "value", "rows", "positives", "auc", "fpr", "tpr")
        for s in card.fairness:
            table.add_row(s.feature, s.value, str(s.rows), str(s.positives),
                          *("-" if v is None else f"{v:.3f}" for v in (s.auc, s.fpr, s.tpr)))
        console.print(table)


@card_app.command("revisions")
def card_revisions(
    ref: str = typer.Argument(..., help="MODEL:VERSION"),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Every revision of a card, oldest first. Example: `mlplat models card revisions fraud:3`."""
    from mlplat.experiment import card_revisions as revisions
    from mlplat.experiment import card_sha256

    model, version = _ref(ref)
    cards = revisions(config(config_path), model, version)
    rows: list[dict[str, Any]] = [
        {"revision": c.revision, "sha256": card_sha256(c), "previous_sha256": c.previous_sha256,
         "created_at": c.created_at.isoformat(), "owner": c.owner} for c in cards]
    if json_out:
        print_json(rows)
        return
    table = Table("revision", "sha256", "previous", "created_at", "owner")
    for r in rows:
        table.add_row(str(r["revision"]), str(r["sha256"])[:12], str(r["previous_sha256"])[:12],
                      str(r["created_at"]), str(r["owner"]))
    console.print(table)


@card_app.command("edit")
def card_edit(
    ref: str = typer.Argument(..., help="MODEL:VERSION"),
    set_: list[str] = SetOption,
    reason: str = typer.Option(..., help="Why (audited)."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Append a card revision. Example:
    `mlplat models card edit fraud:3 --set limitations="Not for new accounts" --reason "Q1 review"`.
    """
    from mlplat.experiment import card_sha256, edit_model_card

    model, version = _ref(ref)
    changes: dict[str, str] = {}
    for pair in set_:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set expects FIELD=VALUE, got {pair!r}.")
        changes[key.strip()] = value
    cfg = config(config_path)
    card = edit_model_card(cfg, model, version, changes, actor=caller(cfg), reason=reason)
    console.print(f"{model} v{version}: card revision {card.revision} "
                  f"(sha256 {card_sha256(card)[:12]}…)")


@card_app.command("delete")
def card_delete(
    ref: str = typer.Argument(..., help="MODEL:VERSION"),
    reason: str = typer.Option(..., help="Why (audited)."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Remove a version's card (refused while it serves traffic). Audited."""
    from mlplat.experiment import delete_model_card

    model, version = _ref(ref)
    cfg = config(config_path)
    delete_model_card(cfg, model, version, actor=caller(cfg), reason=reason)
    console.print(f"{model} v{version}: card removed (the version is no longer deployable)")


@models_app.command("delete")
def delete(
    ref: str = typer.Argument(..., help="MODEL:VERSION, e.g. fraud:2"),
    reason: str = typer.Option(..., help="Why (audited)."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Delete a version, refused (exit 2, audited) while production/canary/shadow points at it.

    Example: `mlplat models delete fraud:2 --reason superseded`.
    """
    from mlplat.experiment import delete_model_version

    model, version = _ref(ref)
    cfg = config(config_path)
    delete_model_version(cfg, model, version, actor=caller(cfg), reason=reason)
    console.print(f"deleted {model} v{version}")


@models_app.command("webhook")
def webhook(
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 in a pod)."),
    port: int = typer.Option(8443, help="Port (the Service mlplat-governance targets 8443)."),
    ssl_certfile: Path | None = CertOption,
    ssl_keyfile: Path | None = KeyOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Serve the admission webhook (POST /v1/admission/model-versions).

    Example: `mlplat models webhook --host 0.0.0.0 --ssl-certfile tls.crt --ssl-keyfile tls.key`.
    """
    import uvicorn

    from mlplat.experiment import governance_webhook_app

    uvicorn.run(governance_webhook_app(config(config_path)), host=host, port=port,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None, log_level="warning")
