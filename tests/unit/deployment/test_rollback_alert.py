"""A rollback pages through the monitoring plane's Alertmanager client, routed by team."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def test_rollback_alert_reaches_alertmanagers_v2_api_with_team_and_summary(
        platform_config, monkeypatch) -> None:
    from mlplat.deployment import post_alert

    received: list[tuple[str, list[dict]]] = []

    class Alertmanager(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Alertmanager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLPLAT_ALERTMANAGER_URL", f"http://127.0.0.1:{server.server_port}")
        said = post_alert(platform_config, "critical", "fraud: rolled back v2 → v1: error rate",
                          {"app": "fraud", "from_version": "2", "to_version": "1"}, "risk")
    finally:
        server.shutdown()
    assert said.startswith("posted DeploymentRolledBack"), said
    (path, alerts), = received
    assert path == "/api/v2/alerts"
    assert alerts[0]["labels"] == {"alertname": "DeploymentRolledBack", "severity": "critical",
                                   "team": "risk", "app": "fraud", "from_version": "2",
                                   "to_version": "1"}
    assert alerts[0]["annotations"]["summary"].startswith("fraud: rolled back v2")


def test_rollback_alert_never_raises_when_alertmanager_is_down(platform_config,
                                                               monkeypatch) -> None:
    from mlplat.deployment import post_alert

    monkeypatch.setenv("MLPLAT_ALERTMANAGER_URL", "http://127.0.0.1:9")  # nothing listens
    said = post_alert(platform_config, "warning", "x", {"app": "fraud"}, "risk")
    assert said.startswith("Alertmanager http://127.0.0.1:9: InfraError"), said
