from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, caller, config, console, print_json
from mlplat.errors import UserError

app = typer.Typer(help="The tamper-evident audit log. Example: `mlplat audit verify`.",
                  no_args_is_help=True)


def _head(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise UserError(f"--expected-head must be SEQ:SHA256 (as `mlplat audit head` prints), "
                        f"got {value!r}.")
    return int(seq), digest


@app.command("verify")
def verify(
    expected_head: str | None = typer.Option(
        None, help="A head published earlier, SEQ:SHA256; the log must still contain it."),
    workers: int | None = typer.Option(None, help="Processes for large logs (default: CPUs)."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """Recompute the hash chain and signed checkpoints; exit 1 naming the first bad record.

    Example: `mlplat audit verify` or `mlplat audit verify --expected-head 1200:3f2a…`.
    """
    from mlplat.audit import AuditLog

    result = AuditLog(config(config_path)).verify(expected_head=_head(expected_head),
                                                  workers=workers)
    if json_out:
        print_json(result.model_dump())
    elif result.ok:
        console.print(f"audit log OK: {result.records} records, hash chain intact, "
                      f"{result.checkpoints} signed checkpoints matched, signed head at seq "
                      f"{result.head_seq}" + (f", purged through seq {result.base_seq}"
                                              if result.base_seq else ""))
    else:
        console.print(f"[red]audit log BROKEN at record {result.first_bad_seq}: "
                      f"{result.problem}[/red]")
    if not result.ok:
        raise typer.Exit(1)


@app.command("log")
def log(
    since: int = typer.Option(0, help="Show records after this sequence number."),
    target: str | None = typer.Option(None, help="Only records about this target."),
    action: str | None = typer.Option(None, help="Only actions starting with this."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """List audit records. Example: `mlplat audit log --since 10 --action deployment.`."""
    from mlplat.audit import AuditLog

    events = AuditLog(config(config_path)).events(since_seq=since, target=target,
                                                  action_prefix=action)
    if json_out:
        print_json([e.model_dump(mode="json") for e in events])
        return
    table = Table("seq", "when (UTC)", "actor", "action", "target", "outcome", "reason")
    for e in events:
        table.add_row(str(e.seq), e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action,
                      e.target, e.outcome, e.reason)
    console.print(table)


@app.command("head")
def head(config_path: Path | None = ConfigOption) -> None:
    """Print the head as SEQ:SHA256 — publish it somewhere the platform cannot rewrite.

    Example: `mlplat audit head >> ticket.txt`.
    """
    from mlplat.audit import AuditLog

    seq, digest = AuditLog(config(config_path)).head()
    typer.echo(f"{seq}:{digest}")


@app.command("checkpoint")
def checkpoint(config_path: Path | None = ConfigOption) -> None:
    """Sign a checkpoint of the current head now. Example: `mlplat audit checkpoint`."""
    from mlplat.audit import AuditLog

    seq, digest = AuditLog(config(config_path)).checkpoint()
    typer.echo(f"{seq}:{digest}")


@app.command("purge")
def purge(
    before: str = typer.Option(..., help="Delete records older than this, ISO date (UTC)."),
    reason: str = typer.Option(..., help="Why, e.g. the retention ticket (audited)."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Delete records past the retention period (refused, and audited, otherwise).

    Example: `mlplat audit purge --before 2019-01-01 --reason RET-7` (audited as the person
    whose token is in $MLPLAT_TOKEN).
    """
    from datetime import UTC

    from mlplat.audit import AuditLog

    try:
        parsed = datetime.fromisoformat(before)
    except ValueError as exc:
        raise UserError(f"--before {before!r} is not an ISO date; use e.g. 2019-01-01.") from exc
    when = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    cfg = config(config_path)
    deleted = AuditLog(cfg).purge(when, actor=caller(cfg), reason=reason)
    typer.echo(f"purged {deleted} audit records older than {when.isoformat()}")
