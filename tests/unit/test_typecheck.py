"""STYLE.md: the package ships py.typed and is mypy-clean; keep it so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_platform_package_is_mypy_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                         text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-4000:]
