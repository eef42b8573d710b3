"""Train an app's model on the cluster and register it: the entrypoint for `ray job submit`.

Example:
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/train.py --app fraud --dataset .mlplat/datasets/fraud \\
        --run-name fraud-nightly --set learning_rate=0.02 --set hidden_units=16

The last stdout line is one JSON object: run_id, model, version, metrics, dataset_sha256 (plus
run_name, checkpoint_path, resumed_from_step, timings_s). Resubmitting with the same --run-name
resumes from that run's latest checkpoint. Exit status: 0 ok, 2 bad input, 1 infrastructure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (types are coerced by TrainingConfig)."""
    from mlplat.errors import UserError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(
                f"--set expects key=value, got '{pair}' (e.g. --set learning_rate=0.02)."
            )
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="App name (folder under apps/) or path.")
    parser.add_argument("--dataset", required=True, help="Dataset folder or its manifest.json.")
    parser.add_argument("--run-name", default=None, help="Reuse to resume a run's checkpoints.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a training setting from app.yaml, e.g. --set epochs=2 (repeatable).",
    )
    parser.add_argument(
        "--min-step-s",
        type=float,
        default=0.0,
        help="Lower bound on seconds per optimizer step (fault drills, benchmarks).",
    )
    parser.add_argument(
        "--alias",
        default=None,
        choices=["staging"],
        help="Point this MLflow alias at the new version: 'staging' starts its promotion.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="platform.yaml (default: $MLPLAT_CONFIG or the repository's platform.yaml).",
    )
    args = parser.parse_args(argv)

    import ray

    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.errors import MlplatError, UserError
    from mlplat.training import train

    try:
        cfg = load_config(args.config or os.environ.get("MLPLAT_CONFIG") or REPO / "platform.yaml")
        app = load_app(args.app, cfg)
        overrides = parse_set(args.set)
        if not ray.is_initialized():
            ray.init()  # RAY_ADDRESS under `ray job submit`, else the running local cluster
        result = train(
            cfg,
            app,
            args.dataset,
            run_name=args.run_name,
            overrides=overrides,
            min_step_s=args.min_step_s,
        )
        if args.alias:
            from mlplat.experiment import set_alias

            set_alias(cfg, app.name, args.alias, result.version)
    except MlplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    print(json.dumps(result.to_json(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
