"""The CLI is thin, and a user error is one actionable line with a non-zero exit, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _mlplat(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from mlplat.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_config_validate_ok() -> None:
    out = _mlplat("config", "validate")
    assert out.returncode == 0, out.stderr
    assert "p4d.24xlarge" in out.stdout and "valid" in out.stdout


def test_invalid_config_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "platform.yaml"
    bad.write_text((REPO / "platform.yaml").read_text().replace("version: 1", "version: 1\nbogus: 2"))
    out = _mlplat("config", "validate", "--config", str(bad))
    assert out.returncode == 2
    assert "bogus" in out.stderr and str(bad) in out.stderr
    assert "Traceback" not in out.stderr


def test_jobs_submit_checks_team_before_touching_the_cluster() -> None:
    out = _mlplat("jobs", "submit", "jobs/train.py", "--team", "rsk", "--model", "fraud")
    assert out.returncode == 2
    assert "Unknown team 'rsk'" in out.stderr and "Did you mean 'risk'" in out.stderr
