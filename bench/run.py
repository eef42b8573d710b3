"""Run every benchmark in bench/ (files named bench_*.py, each with a main()).

Each benchmark prints ratios against a baseline measured in the same run: the machines are
noisy, so absolute times mean little. Example: `make bench`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    benches = sorted(here.glob("bench_*.py"))
    if not benches:
        print("no benchmarks yet")
        return 0
    for path in benches:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {path.stem}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
