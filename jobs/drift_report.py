"""Print the latest drift report of a served model version, from the drift-monitor actor.

Submit it like any Ray job (or run it where `ray.init()` reaches the cluster); the last line of
stdout is the ``DriftReport`` as one-line JSON. ``--compute`` closes the current window and
reports on it now instead of printing the last closed window.

Example:
    $ ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/drift_report.py --model fraud --version 2
    {"model": "fraud", "version": "2", "window_start": "…", "features": {"amount": {…}}, …}
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the latest DriftReport as JSON.")
    parser.add_argument("--model", required=True, help="Model name, e.g. fraud")
    parser.add_argument("--version", required=True, help="Model version, e.g. 2")
    parser.add_argument("--compute", action="store_true",
                        help="Close the current window and report on it now")
    parser.add_argument("--min-rows", type=int, default=None,
                        help="With --compute: fewest rows to report on")
    parser.add_argument("--actor-name", default=None, help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)

    import ray

    from mlplat.cluster import DRIFT_MONITOR_ACTOR
    from mlplat.errors import MlplatError
    from mlplat.monitoring import DEFAULT_MIN_ROWS, NAMESPACE

    name = args.actor_name or DRIFT_MONITOR_ACTOR
    if not ray.is_initialized():
        ray.init(namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
    try:
        monitor = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        print(f"error: no drift monitor actor '{name}' in namespace '{NAMESPACE}': nothing has "
              "been served with drift sampling on this cluster yet.", file=sys.stderr)
        return 2
    try:
        if args.compute:
            report = ray.get(monitor.report.remote(args.model, args.version,
                                                   args.min_rows or DEFAULT_MIN_ROWS))
        else:
            report = ray.get(monitor.latest_report.remote(args.model, args.version))
    except MlplatError as exc:  # Ray re-raises the actor's UserError/NotFoundError as such
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report is None:
        stats = ray.get(monitor.stats.remote())
        window = stats.windows.get(f"{args.model}/{args.version}")
        buffered = window.buffered_rows if window else 0
        print(f"error: no drift report yet for {args.model}/{args.version} ({buffered} rows in "
              "the open window); rerun with --compute to report on it now.", file=sys.stderr)
        return 2
    print(json.dumps(report.model_dump(mode="json")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
