"""Print the platform's cost report (by team, model, pool and per inference) as JSON.

The cost-meter actor first charges every submitted Ray job from its metadata (team, model,
pool, cpus), then reports; the last line of stdout is the ``CostReport`` as one-line JSON.

Example:
    $ ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/cost_digest.py
    {"generated_at": "…", "total_usd": 0.42, "by_team": {"risk": 0.4, "search": 0.02}, …}
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the CostReport as JSON.")
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    parser.add_argument("--no-collect", action="store_true",
                        help="Do not read the Ray job list first (usage records only)")
    parser.add_argument("--dashboard-url", default=None,
                        help="Ray job API for job costs (default: from platform.yaml)")
    parser.add_argument("--actor-name", default=None, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)

    import ray

    from mlplat.config import load_config
    from mlplat.errors import MlplatError
    from mlplat.governance import COST_METER_NAME, get_cost_meter

    try:
        cfg = load_config(args.config)
        ray.init(namespace="mlplat", logging_level="ERROR", log_to_driver=False)
        meter = get_cost_meter(cfg, name=args.actor_name or COST_METER_NAME,
                               dashboard_url=args.dashboard_url)
        report = ray.get(meter.report.remote(collect=not args.no_collect))
    except MlplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.model_dump(mode="json")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
