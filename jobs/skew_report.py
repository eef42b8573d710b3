"""Training–serving skew report: recompute logged served features offline, on the Ray cluster.

Reads the served-feature log the serving path writes (``<root>/feature_log/<app>``), joins
every logged row to the app's feature views as of its request time (the dataset job's as-of
join) and prints per-feature mismatch rates; the last line of stdout is the report as JSON.

Example:
    $ ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/skew_report.py --app fraud --hours 24
    {"app": "fraud", "rows": 812, "rows_with_mismatch": 0, "features": {...}, ...}
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from mlplat.apps import load_app
from mlplat.config import load_config
from mlplat.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Served vs offline feature values.")
    parser.add_argument("--app", required=True, help="App name under apps/, e.g. fraud")
    parser.add_argument("--hours", type=float, default=None, help="Only the last N hours")
    parser.add_argument("--log", default=None, help="Log folder/URI (default: <root>/feature_log/<app>)")
    parser.add_argument("--examples", type=int, default=10, help="Worst mismatches to keep")
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    args = parser.parse_args(argv)

    import ray

    from mlplat.data import skew_report

    try:
        cfg = load_config(args.config)
        app = load_app(args.app, cfg)
        since = datetime.now(UTC) - timedelta(hours=args.hours) if args.hours else None
        ray.init()  # RAY_ADDRESS (set by `ray job submit`) or the running local cluster
        report = skew_report(cfg, app, since=since, log_dir=args.log, max_examples=args.examples)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, f in report.features.items():
        print(f"{name:>20}: {f.mismatches:>6} of {f.compared} differ ({f.mismatch_rate:.2%})")
    print(json.dumps(report.model_dump(mode="json")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
