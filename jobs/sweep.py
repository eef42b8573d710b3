"""Hyperparameter sweep (Ray Tune: Optuna search + ASHA) within the team's quota.

Example:
    mlplat jobs submit jobs/sweep.py --team risk --model fraud --priority batch-low \\
        --pool training-spot --cpus 8 -- --app fraud --dataset .mlplat/datasets/fraud \\
        --num-samples 64 --epochs 4

Trials run at most ``teams.<team>.quotas.training-spot.max_concurrent_trials`` at a time
(capped by the team's CPU quota / --cpus-per-trial, and by --max-concurrent); each is an MLflow
child run of the sweep's run; the best trial is registered as a model version. The last stdout
line is one JSON object (name, parent_run_id, trials, max_concurrent_trials, best_config,
best_metrics, model_name, version, run_id, child_run_ids, timings_s). Exit status: 0 ok,
2 bad input, 1 infrastructure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="App name (folder under apps/) or path.")
    parser.add_argument("--dataset", required=True, help="Dataset folder or its manifest.json.")
    parser.add_argument("--team", default=None, help="Team whose quota bounds the sweep.")
    parser.add_argument("--num-samples", type=int, default=16, help="Trials in total.")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per trial (ASHA max_t).")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="Run fewer trials at once than the quota allows.")
    parser.add_argument("--name", default=None, help="Sweep name (MLflow parent run).")
    parser.add_argument("--min-step-s", type=float, default=0.0,
                        help="Lower bound on seconds per optimizer step (drills, benchmarks).")
    parser.add_argument("--config", default=None,
                        help="platform.yaml (default: $MLPLAT_CONFIG or the repository's).")
    args = parser.parse_args(argv)

    import ray

    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.errors import MlplatError, UserError
    from mlplat.training import sweep

    try:
        cfg = load_config(args.config or os.environ.get("MLPLAT_CONFIG") or REPO / "platform.yaml")
        app = load_app(args.app, cfg)
        if not ray.is_initialized():
            ray.init()
        result = sweep(
            cfg, app, args.dataset, team=args.team, num_samples=args.num_samples,
            epochs=args.epochs, cpus_per_trial=args.cpus_per_trial,
            max_concurrent_trials=args.max_concurrent, name=args.name,
            min_step_s=args.min_step_s,
        )
    except MlplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    print(json.dumps(result.to_json(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
