"""Build the tiny Llama an LLM app serves on CPU: local BPE tokenizer + tiny random weights.

No network: the tokenizer is trained with ``tokenizers`` on a generated corpus and the model is
a ``LlamaForCausalLM`` with the app's ``builder:`` dimensions, warmed up for a few steps. It is
written to the app's local model source (``.mlplat/llm/models/<model>/<version>``) and, with
``--register``, logged to MLflow as a new registered version of the model (so a router can load
version 1 and 2). The last line of stdout is a one-line JSON summary.

Example:
    $ python jobs/build_tiny_llm.py --app llm                       # version 1, seed 0
    $ python jobs/build_tiny_llm.py --app llm --version 2 --seed 1 --register
    {"path": ".../.mlplat/llm/models/tiny-chat/2", "parameters": 114496, "registered_version": "2", …}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the tiny local LLM of an LLM app.")
    parser.add_argument("--app", default="llm", help="LLM app name or folder (default: llm)")
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    parser.add_argument("--version", default=None, help="Version folder (default: app's model.version)")
    parser.add_argument("--seed", type=int, default=0, help="Weights/warm-up seed (versions differ by seed)")
    parser.add_argument("--out", default=None, help="Write here instead of the app's model source")
    parser.add_argument("--register", action="store_true",
                        help="Also register the folder in MLflow as a new model version")
    args = parser.parse_args(argv)

    from mlplat.config import load_config
    from mlplat.errors import MlplatError
    from mlplat.llm import build_tiny_llm, load_llm_app, register_model, resolve_local_source

    try:
        cfg = load_config(args.config)
        app = load_llm_app(args.app, cfg)
        out = Path(args.out) if args.out else resolve_local_source(cfg, app, args.version)
        result = build_tiny_llm(app.builder, out, seed=args.seed)
        registered = register_model(cfg, app, result.path) if args.register else None
    except MlplatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({
        "path": str(result.path), "parameters": result.parameters,
        "vocab_size": result.vocab_size, "final_loss": result.final_loss,
        "weights_sha256": result.weights_sha256, "seconds": round(result.seconds, 2),
        "registered_version": registered,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
