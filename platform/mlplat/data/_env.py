"""Print the environment an app's Feast repo needs, as shell ``export`` lines.

Lets a person use the Feast CLI on a mlplat-managed repo:

Example:
    $ eval "$(python -m mlplat.data._env fraud)"
    $ cd apps/fraud/feature_repo && feast apply
"""

from __future__ import annotations

import argparse
import shlex

from mlplat.config import load_config
from mlplat.data._feast import feast_env


def exports(env: dict[str, str]) -> str:
    """``export K='v'`` lines, quoted for POSIX shells."""
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlplat.data._env",
        description="Print `export` lines for an app's Feast repo (eval them in your shell).",
    )
    parser.add_argument("app", help="App name, e.g. fraud")
    parser.add_argument("--config", default=None, help="platform.yaml (default: $MLPLAT_CONFIG)")
    args = parser.parse_args(argv)
    print(exports(feast_env(load_config(args.config), args.app)))


if __name__ == "__main__":
    main()
