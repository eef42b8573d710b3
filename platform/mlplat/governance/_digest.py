"""The weekly cost digest: one Markdown page for people and one CSV for spreadsheets."""

from __future__ import annotations

import csv
from pathlib import Path

from mlplat.config import PlatformConfig
from mlplat.governance._cost import CostReport


def write_cost_digest(cfg: PlatformConfig, report: CostReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``cost-digest.md`` and ``cost-digest.csv`` (team, model, USD, share of the team's
    weekly budget, serving USD per inference) into ``out_dir``.

    Returns:
        The Markdown and CSV paths.

    Example:
        >>> md, csv_path = write_cost_digest(cfg, meter.report(since=time.time() - 7 * 86400),
        ...                                  ".mlplat/cost-digests/2026-W48")
        >>> csv_path.read_text().splitlines()[0]
        'team,model,usd,budget_usd_per_week,share_of_budget,usd_per_inference,inferences'
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for team, models in sorted(report.by_team_model.items()):
        budget = cfg.teams[team].budget_usd_per_week if team in cfg.teams else 0.0
        for model, usd in sorted(models.items(), key=lambda kv: -kv[1]):
            rows.append({
                "team": team, "model": model, "usd": round(usd, 6),
                "budget_usd_per_week": budget,
                "share_of_budget": round(usd / budget, 6) if budget else "",
                "usd_per_inference": (f"{report.per_inference_usd[model]:.10f}"
                                      if model in report.per_inference_usd else ""),
                "inferences": report.inferences.get(model, 0),
            })
    csv_path = out / "cost-digest.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["team", "model", "usd", "budget_usd_per_week",
                                                "share_of_budget", "usd_per_inference",
                                                "inferences"])
        writer.writeheader()
        writer.writerows(rows)
    period = (f"{report.since:%Y-%m-%d %H:%M} – " if report.since else "all time – ") + \
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC"
    lines = [f"# Cost digest ({period})", "",
             f"Total: **${report.total_usd:,.2f}** "
             f"(spot ${report.by_capacity.get('spot', 0.0):,.2f}, "
             f"on-demand ${report.by_capacity.get('on-demand', 0.0):,.2f}).", "",
             "## By team", "", "| team | USD | weekly budget | used |", "|---|---:|---:|---:|"]
    for team, usd in sorted(report.by_team.items(), key=lambda kv: -kv[1]):
        b = report.budgets.get(team, {})
        budget = b.get("budget_usd_per_week", 0.0)
        flag = " ⚠ over budget" if b.get("used_share", 0.0) > 1 else ""
        lines.append(f"| {team} | {usd:,.2f} | {budget:,.0f} | "
                     f"{(usd / budget if budget else 0):.1%}{flag} |")
    lines += ["", "## By team and model", "", "| team | model | USD | USD per inference |",
              "|---|---|---:|---:|"]
    lines += [f"| {r['team']} | {r['model']} | {r['usd']:,.2f} | {r['usd_per_inference'] or '–'} |"
              for r in rows]
    lines += ["", "## By kind", ""]
    lines += [f"- {kind}: ${usd:,.2f}" for kind, usd in sorted(report.by_kind.items())]
    if report.skipped_jobs or report.unattributed:
        lines += ["", "## Not attributed", ""]
        lines += [f"- job {j}: {why}" for j, why in sorted(report.skipped_jobs.items())]
        lines += [f"- {n} task(s)/actor(s): {why}" for why, n in sorted(report.unattributed.items())]
    md_path = out / "cost-digest.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path
