"""The local NGINX ingress (real nginx, a stand-in upstream; the Serve drill is in
tests/integration/test_serving.py): what it replays, what it never does."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from mlplat.cluster import INGRESS_RETRY_TRIES
from mlplat.deployment import ingress_down, ingress_up
from tests.services import free_port


class _Upstream(http.server.ThreadingHTTPServer):
    """Answers each request id with the status codes queued for it, then 200."""

    def __init__(self, port: int, plan: dict[str, list[int]]) -> None:
        self.plan = plan
        self.sends: Counter[str] = Counter()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Upstream

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        rid = self.path.rsplit("/", 1)[-1]
        self.server.sends[rid] += 1
        queued = self.server.plan.get(rid, [])
        status = queued.pop(0) if queued else 200
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def upstream() -> Iterator[_Upstream]:
    server = _Upstream(free_port(), {})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def ingress(platform_config, upstream, tmp_path):
    running = ingress_up(platform_config, port=free_port(),
                         serve_port=upstream.server_address[1], folder=tmp_path / "ingress")
    yield running
    assert ingress_down(platform_config, folder=tmp_path / "ingress")


def test_a_500_from_a_dying_replica_is_replayed_and_the_client_never_sees_it(
        ingress, upstream) -> None:
    upstream.plan.update({"a": [500], "b": [502], "c": [500, 500]})
    with httpx.Client(timeout=10) as client:
        for rid in ("a", "b", "c", "d"):
            r = client.post(f"{ingress.url}/fraud/predict/{rid}", json={"request_id": rid})
            assert r.status_code == 200 and r.json() == {"request_id": rid}  # body replayed too
    assert upstream.sends == {"a": 2, "b": 2, "c": 3, "d": 1}
    replays = ingress.replays()  # what a user reads to see what the ingress saved
    assert [line.split()[2] for line in replays] == [
        "/fraud/predict/a", "/fraud/predict/b", "/fraud/predict/c"]
    assert 'upstream_status="500, 500, 200" status=200' in replays[2]


def test_replays_are_bounded(ingress, upstream) -> None:
    upstream.plan["e"] = [500, 500, 500, 500]
    r = httpx.post(f"{ingress.url}/fraud/predict/e", json={}, timeout=10)
    # INGRESS_RETRY_TRIES (3) sends, then the last answer goes to the client.
    assert r.status_code == 500 and upstream.sends["e"] == INGRESS_RETRY_TRIES == 3


def test_admin_routes_and_backpressure_are_never_replayed(ingress, upstream) -> None:
    """A promotion is not repeated; a full queue (Serve's 503) is not made fuller."""
    upstream.plan.update({"promote": [500], "f": [503]})
    assert httpx.post(f"{ingress.url}/fraud/admin/promote", json={}).status_code == 500
    assert httpx.post(f"{ingress.url}/fraud/predict/f", json={}).status_code == 503
    assert upstream.sends == {"promote": 1, "f": 1}


def test_down_stops_it_and_up_again_restarts_it(platform_config, upstream, tmp_path) -> None:
    folder = tmp_path / "again"
    port = free_port()
    first = ingress_up(platform_config, port=port, serve_port=upstream.server_address[1],
                       folder=folder)
    again = ingress_up(platform_config, port=port, serve_port=upstream.server_address[1],
                       folder=folder)  # running: reloads, does not fail on the taken port
    assert again == first
    assert httpx.post(f"{first.url}/x/predict/g", json={}).status_code == 200
    assert ingress_down(platform_config, folder=folder)
    assert not ingress_down(platform_config, folder=folder)
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{first.url}/x/predict/g", json={}, timeout=2)
