"""cluster/monitoring/ is what platform.yaml renders, is valid for the real tools, and the
dashboard only uses metrics the code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlplat.config import load_config
from mlplat.monitoring import (
    METRIC_NAMES,
    exported_names,
    render_alertmanager_config,
    render_prometheus_config,
    render_prometheus_rules,
)

REPO = Path(__file__).resolve().parents[3]
DIR = REPO / "cluster" / "monitoring"
RENDERERS = {"prometheus-rules.yaml": render_prometheus_rules,
             "alertmanager.yaml": render_alertmanager_config,
             "prometheus.yml": render_prometheus_config}
SERVE_SOURCES = REPO / ".venv/lib/python3.11/site-packages/ray/serve/_private"


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_committed_file_is_the_rendering_of_platform_yaml(name: str) -> None:
    cfg = load_config(REPO / "platform.yaml")
    assert (DIR / name).read_text() == RENDERERS[name](cfg), (
        f"cluster/monitoring/{name} is stale: re-render it with "
        f"mlplat.monitoring.{RENDERERS[name].__name__}(cfg)")


def test_rules_and_alertmanager_config_pass_the_real_checkers(tmp_path: Path) -> None:
    if not (shutil.which("promtool") and shutil.which("amtool")):
        pytest.skip("promtool/amtool not installed (`make install` installs prometheus)")
    out = subprocess.run(["promtool", "check", "rules", str(DIR / "prometheus-rules.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout
    out = subprocess.run(["amtool", "check-config", str(DIR / "alertmanager.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def _serve_metric_defined(name: str) -> bool:
    base = re.sub(r"^ray_", "", re.sub(r"_(total|bucket|sum|count)$", "", name))
    return any(f'"{base}"' in p.read_text() for p in SERVE_SOURCES.glob("*.py"))


def _metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:ray_serve|mlplat)_[a-z0-9_]+)\b", expr))


def test_every_dashboard_panel_uses_exported_metrics() -> None:
    dash = json.loads((DIR / "grafana-dashboard.json").read_text())
    exported = exported_names()
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    seen: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            names = _metrics_in(target["expr"])
            assert names, f"panel {panel['title']!r} queries no platform or Serve metric"
            for name in names:
                ok = name in exported if name.startswith("mlplat_") else _serve_metric_defined(name)
                assert ok, f"panel {panel['title']!r} uses {name}, which nothing exports"
            seen |= names
    # The dashboard covers traffic, latency, errors, drift and cost.
    for needle in ("request_counter", "latency", "error_counter", "mlplat_drift_share_drifted",
                   "mlplat_cost_usd"):
        assert any(needle in n for n in seen), needle


def test_every_rule_uses_exported_metrics() -> None:
    exported = exported_names()
    rules = (DIR / "prometheus-rules.yaml").read_text()
    for name in _metrics_in(rules):
        assert (name in exported if name.startswith("mlplat_") else _serve_metric_defined(name)), name
    assert "mlplat_model_info" in METRIC_NAMES
