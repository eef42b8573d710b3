"""Real Prometheus and Alertmanager on loopback: injected drift reaches Alertmanager both
straight from the drift monitor and through Prometheus' rules, and the on-call tools
(PagerDuty Events API v2, Opsgenie) receive what cluster/monitoring/alertmanager.yaml routes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlplat.config import load_config
from tests.services import free_port, poll, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ALERT_BOUND_S = 90.0
"""Our bound for drift → alert in Alertmanager (design SLO: slos.monitoring.critical_alert_s)."""




class OnCall:
    """A loopback HTTP endpoint standing in for PagerDuty and Opsgenie; records every POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append({"path": self.path, "headers": dict(self.headers),
                                       "body": json.loads(body or b"{}")})
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success", "message": "Event processed"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"].startswith(prefix)]


def _start(cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 30, proc)
    except Exception:
        proc.kill()
        raise AssertionError(f"{cmd[0]} did not start: {log.read_text()[-2000:]}") from None
    return proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Alertmanager with a test copy of cluster/monitoring/alertmanager.yaml (receivers →
    loopback, 1 s group wait) and Prometheus scraping two exporter ports every second with the
    committed rules."""
    from mlplat.monitoring import render_alertmanager_config, render_prometheus_config

    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} not installed (`make install` installs the Debian package)")
    cfg = load_config(REPO / "platform.yaml")
    work = tmp_path_factory.mktemp("alerting")
    secrets = work / "secrets"
    secrets.mkdir()
    for team in [*cfg.teams, "platform"]:
        (secrets / f"pagerduty-{team}").write_text(f"routing-key-{team}")
    (secrets / "opsgenie").write_text("opsgenie-api-key")
    oncall = OnCall()
    am_port, prom_port = free_port(), free_port()
    (work / "alertmanager.yaml").write_text(render_alertmanager_config(
        cfg, pagerduty_url=f"{oncall.url}/pagerduty/v2/enqueue",
        opsgenie_api_url=f"{oncall.url}/opsgenie/", secrets_dir=str(secrets), group_wait_s=1))
    am = _start(["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yaml'}",
                 f"--web.listen-address=127.0.0.1:{am_port}", f"--storage.path={work / 'am'}",
                 "--cluster.listen-address="], am_port, work / "am.log")
    drift_port, cost_port = free_port(), free_port()
    shutil.copy(REPO / "cluster" / "monitoring" / "prometheus-rules.yaml", work)
    (work / "prometheus.yml").write_text(render_prometheus_config(
        cfg, targets=[f"127.0.0.1:{drift_port}", f"127.0.0.1:{cost_port}"],
        alertmanager=f"127.0.0.1:{am_port}", rules_file=str(work / "prometheus-rules.yaml"),
        scrape_interval_s=1, evaluation_interval_s=1))
    prom = _start(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                   f"--web.listen-address=127.0.0.1:{prom_port}",
                   f"--storage.tsdb.path={work / 'tsdb'}"], prom_port, work / "prom.log")
    try:
        yield {"cfg": cfg, "oncall": oncall, "am": f"http://127.0.0.1:{am_port}",
               "prom": f"http://127.0.0.1:{prom_port}", "drift_port": drift_port,
               "cost_port": cost_port}
    finally:
        for proc in (prom, am):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        oncall.server.shutdown()


def _get(url: str) -> Any:
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


def am_alerts(stack: dict[str, Any], name: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in _get(f"{stack['am']}/api/v2/alerts")
            if a["labels"].get("alertname") == name
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def prom_firing(stack: dict[str, Any], name: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in _get(f"{stack['prom']}/api/v1/alerts")["data"]["alerts"]
            if a["labels"].get("alertname") == name and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def rows(seed: int, n: int, shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    mix = [0.1, 0.2, 0.7] if shift else [0.6, 0.3, 0.1]
    return [{"amount": float(a), "country": str(c)} for a, c in
            zip(rng.lognormal(3 + shift, 0.8, n), rng.choice(["DE", "FR", "US"], n, p=mix),
                strict=True)]


def test_injected_drift_pages_the_owning_team_through_alertmanager(ray_cluster: str,
                                                                   stack: dict[str, Any]) -> None:
    import ray

    from mlplat.monitoring import get_drift_monitor

    cfg = stack["cfg"]
    name = f"mlplat-drift-alerts-test-{os.getpid()}"
    version = f"al{os.getpid()}"
    mon = get_drift_monitor(cfg, name=name, metrics_port=stack["drift_port"],
                            alertmanager=stack["am"], retrain=False)
    try:
        ray.get(mon.set_reference.remote("fraud", version, rows(1, 1500)), timeout=240)
        t0 = time.monotonic()
        mon.record.remote("fraud", version, rows(2, 800, shift=1.5), [0.9] * 800)
        # 1. Posted straight to Alertmanager when the window closes (no scrape in between).
        try:
            (direct,) = poll(lambda: am_alerts(stack, "ModelDriftCritical", version=version),
                             lambda a: len(a) == 1, ALERT_BOUND_S,
                             "the direct alert in Alertmanager")
        except AssertionError as exc:
            state = ray.get([mon.latest_report.remote("fraud", version), mon.errors.remote(),
                             mon.stats.remote()], timeout=60)
            raise AssertionError(f"{exc}; monitor state: {state}") from None
        direct_s = time.monotonic() - t0
        assert direct["labels"]["team"] == "risk" and direct["labels"]["severity"] == "critical"
        # 2. Prometheus scrapes the monitor's exporter and its rule fires the same alert.
        (fired,) = poll(lambda: prom_firing(stack, "ModelDriftCritical", version=version),
                        lambda a: len(a) == 1, ALERT_BOUND_S, "the rule firing in Prometheus")
        rule_s = time.monotonic() - t0
        assert fired["labels"]["team"] == "risk"  # joined from mlplat_model_info
        print(f"drift → Alertmanager: direct {direct_s:.1f}s, via Prometheus rule {rule_s:.1f}s")
        # 3. Alertmanager routes severity=critical, team=risk to risk's PagerDuty service.
        (page,) = poll(lambda: [p for p in stack["oncall"].posts("/pagerduty/")
                                if p["body"].get("payload", {}).get("custom_details", {})
                                .get("version") == version],
                       lambda p: len(p) >= 1, ALERT_BOUND_S, "the PagerDuty event")[:1]
        event = page["body"]
        assert event["routing_key"] == "routing-key-risk"
        assert event["event_action"] == "trigger"
        assert event["payload"]["severity"] == "critical"
        assert f"fraud v{version}" in event["payload"]["summary"]
        assert event["payload"]["custom_details"]["team"] == "risk"
    finally:
        ray.kill(mon, no_restart=True)


def test_budget_breach_and_warnings_go_to_the_teams_opsgenie(ray_cluster: str,
                                                            stack: dict[str, Any]) -> None:
    import ray

    from mlplat.governance import get_cost_meter
    from mlplat.monitoring import post_alert

    cfg = stack["cfg"]
    name = f"mlplat-cost-alerts-test-{os.getpid()}"
    meter = get_cost_meter(cfg, name=name, metrics_port=stack["cost_port"], sample=False,
                           alertmanager=stack["am"])
    try:
        pool = cfg.pools["training-spot"]
        budget = cfg.teams["search"].budget_usd_per_week
        nodes = 8
        hours = budget / (pool.price_usd_per_hour * nodes) * 1.05  # 5 % over within the week
        ray.get(meter.record_usage.remote("search", "ranker", "job", "training-spot",
                                          pool.cpus_per_node * nodes, hours * 3600, "big-sweep"),
                timeout=240)
        report = ray.get(meter.report.remote(collect=False))
        assert report.budgets["search"]["used_share"] == pytest.approx(1.05)
        poll(lambda: am_alerts(stack, "TeamBudgetExceeded", team="search"), lambda a: len(a) >= 1,
             ALERT_BOUND_S, "the direct budget alert")
        poll(lambda: prom_firing(stack, "TeamBudgetExceeded", team="search"),
             lambda a: len(a) == 1, ALERT_BOUND_S, "TeamBudgetExceeded from the rule")
        # Warnings (not critical) go to the owning team's Opsgenie responders.
        post_alert(cfg, "ModelDriftWarning", "warning", "recommendations",
                   {"model": "recs", "version": "7"}, {"summary": "recs v7: drift warning"},
                   url=stack["am"])
        by_team = poll(lambda: {p["body"].get("responders", [{}])[0].get("name"): p
                                for p in stack["oncall"].posts("/opsgenie/")},
                       lambda d: {"search", "recommendations"} <= set(d), ALERT_BOUND_S,
                       "Opsgenie alerts for search and recommendations")
        recs = by_team["recommendations"]
        assert recs["path"] == "/opsgenie/v2/alerts"
        assert recs["headers"]["Authorization"] == "GenieKey opsgenie-api-key"
        assert recs["body"]["message"] == "recs v7: drift warning"
        assert "search" in by_team["search"]["body"]["message"]
        assert not [p for p in stack["oncall"].posts("/pagerduty/")
                    if "budget" in json.dumps(p["body"])]  # a budget is not a page
    finally:
        ray.kill(meter, no_restart=True)
