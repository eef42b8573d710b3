"""Write the weekly cost digest (Markdown + CSV per team and model) and print the CostReport.

The cost-meter actor first charges every submitted Ray job from its metadata and what Ray's
state API showed of its tasks and actors, then reports the last ``--days`` days (7 by default).
The digest goes to ``--out`` (default ``<root>/cost-digests/<ISO year>-W<week>/``); the last
line of stdout is the ``CostReport`` as one-line JSON, the line before it the digest paths.

Example:
    $ ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/cost_digest.py --days 7
    {"markdown": ".mlplat/cost-digests/2026-W48/cost-digest.md", "csv": "…/cost-digest.csv"}
    {"generated_at": "…", "total_usd": 0.42, "by_team": {"risk": 0.4, "search": 0.02}, …}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the weekly cost digest; print the CostReport.")
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    parser.add_argument("--days", type=float, default=7.0, help="Period of the digest in days")
    parser.add_argument("--all-time", action="store_true", help="Report everything in the store")
    parser.add_argument("--out", default=None, help="Folder for cost-digest.md / .csv")
    parser.add_argument("--no-collect", action="store_true",
                        help="Do not read the Ray job list first (usage records only)")
    parser.add_argument("--dashboard-url", default=None,
                        help="Ray job API for job costs (default: from platform.yaml)")
    parser.add_argument("--actor-name", default=None, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)

    import ray

    from mlplat.cluster import COST_METER_ACTOR
    from mlplat.config import load_config
    from mlplat.errors import MlplatError
    from mlplat.governance import get_cost_meter, write_cost_digest

    try:
        if args.days <= 0:
            raise MlplatError(f"--days must be > 0, got {args.days}.")
        cfg = load_config(args.config)
        if not ray.is_initialized():
            ray.init(namespace="mlplat", logging_level="ERROR", log_to_driver=False)
        meter = get_cost_meter(cfg, name=args.actor_name or COST_METER_ACTOR,
                               dashboard_url=args.dashboard_url)
        since = None if args.all_time else time.time() - args.days * 86400
        report = ray.get(meter.report.remote(collect=not args.no_collect, since=since))
        year, week, _ = datetime.now(tz=UTC).isocalendar()
        out = Path(args.out) if args.out else Path(cfg.root()) / "cost-digests" / f"{year}-W{week:02d}"
        md, csv_path = write_cost_digest(cfg, report, out)
    except MlplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"markdown": str(md), "csv": str(csv_path)}), flush=True)
    print(json.dumps(report.model_dump(mode="json")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
