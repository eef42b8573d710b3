from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlplat.cli._common import ConfigOption, JsonOption, config, console, print_json

app = typer.Typer(help="The tamper-evident audit log. Example: `mlplat audit verify`.",
                  no_args_is_help=True)


@app.command("verify")
def verify(config_path: Path | None = ConfigOption, json_out: bool = JsonOption) -> None:
    """Recompute the hash chain; exit 1 naming the first bad record. Example: `mlplat audit verify`."""
    from mlplat.governance import AuditLog

    result = AuditLog(config(config_path)).verify()
    if json_out:
        print_json({"ok": result.ok, "records": result.records,
                    "first_bad_seq": result.first_bad_seq, "problem": result.problem})
    elif result.ok:
        console.print(f"audit log OK: {result.records} records, hash chain intact")
    else:
        console.print(f"[red]audit log BROKEN at record {result.first_bad_seq}: {result.problem}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("log")
def log(
    since: int = typer.Option(0, help="Show records after this sequence number."),
    config_path: Path | None = ConfigOption,
    json_out: bool = JsonOption,
) -> None:
    """List audit records. Example: `mlplat audit log --since 10`."""
    from mlplat.governance import AuditLog

    events = AuditLog(config(config_path)).events(since_seq=since)
    if json_out:
        print_json([e.model_dump(mode="json") for e in events])
        return
    table = Table("seq", "when (UTC)", "actor", "action", "target", "outcome", "reason")
    for e in events:
        table.add_row(str(e.seq), e.ts.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action,
                      e.target, e.outcome, e.reason)
    console.print(table)
