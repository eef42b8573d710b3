"""Build a point-in-time-correct training dataset on the Ray cluster.

Submit it like any Ray job; the last line of stdout is a one-line JSON summary. Paths may be
``s3://`` URIs (and ``MLPLAT_HOME`` an ``s3://`` root): pass the AWS_* variables (and
``AWS_ENDPOINT_URL`` for an S3-compatible store) in the job's ``runtime_env`` ``env_vars`` so
the driver and every worker see them.

Example:
    $ ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/build_dataset.py --app fraud --labels .mlplat/raw/fraud/transactions.parquet
    manifest: /…/.mlplat/datasets/fraud/3f2a9c01b4de/manifest.json
    {"app": "fraud", "content_sha256": "3f2a…", "rows": 17892, "manifest": "…", "seconds": 21.4}
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mlplat.apps import load_app
from mlplat.config import load_config
from mlplat.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Join labels to features as of label time.")
    parser.add_argument("--app", required=True, help="App name under apps/, e.g. fraud")
    parser.add_argument("--labels", required=True, help="Label set: parquet file or folder")
    parser.add_argument(
        "--output", default=None, help="Output folder or s3:// URI (default: content-addressed)"
    )
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    args = parser.parse_args(argv)

    import ray

    from mlplat.data import build_dataset

    started = time.perf_counter()
    try:
        cfg = load_config(args.config)
        app = load_app(args.app, cfg)
        ray.init()  # RAY_ADDRESS (set by `ray job submit`) or the running local cluster
        manifest = build_dataset(cfg, app, args.labels, output_dir=args.output)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # manifest.path is the data/ folder; the manifest sits next to it (a path or an s3:// URI).
    manifest_path = f"{manifest.path.rstrip('/').rsplit('/', 1)[0]}/manifest.json"
    print(f"manifest: {manifest_path}")
    summary = {
        "app": app.name,
        "content_sha256": manifest.content_sha256,
        "rows": manifest.row_count,
        "manifest": manifest_path,
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
