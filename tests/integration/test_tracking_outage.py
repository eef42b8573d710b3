"""The buffered tracker against a real `mlflow server` on a real PostgreSQL: outages lose nothing.

One PostgreSQL database and one mlflow server (on a fixed port, restarted in place) are shared
by the module; restarting the server takes most of the time (~15 s each).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import Service, create_database, free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlplat.experiment import BufferedTracker
    uri, buf, exp = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    t = BufferedTracker(uri, buf, probe_interval_s=0.5)
    run = t.start_run(exp, "killed-client")
    t.log_params(run, {"seed": 7})
    step = 0
    while True:
        t.log_metrics(run, {"loss": 1.0 / (step + 1)}, step=step)
        print(run, step, flush=True)
        step += 1
        time.sleep(0.01)
    """
)


@dataclass
class Outage:
    """What happened during one shared outage; the tests below check the outcome."""

    url: str
    exp_a: str = ""
    run_a: str = ""
    closed_a: bool = False
    breaker_open_s: float = 0.0
    slowest_log_s: float = 0.0
    pending_during_outage: int = 0
    exp_b: str = ""
    run_b: str = ""
    last_step_b: int = -1
    closed_b: bool = False


def start_mlflow_server(workdir: Path, db_url: str, port: int | None = None) -> Service:
    """tests.services.start_mlflow_server, with a longer start deadline (importing MLflow on a
    loaded 2-core box has taken > 120 s) and no process left behind when it times out."""
    port = port or free_port()
    backend = "postgresql+psycopg2://" + db_url.removeprefix("postgresql://")
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", backend,
         "--artifacts-destination", str(workdir / "artifacts"), "--workers", "1"],
        stdout=(workdir / f"mlflow-{port}.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    svc = Service("mlflow", port, f"http://127.0.0.1:{port}", proc=proc, workdir=workdir,
                  group=True)
    try:
        wait_for_port(port, timeout_s=300, proc=proc)
    except BaseException:
        svc.kill()
        raise
    return svc


def _wait(cond, timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"{what} not within {timeout_s}s")


def _killed_client(url: str, buf: Path, exp: str) -> tuple[str, int]:
    """A job logging in a loop while the server is down, then `kill -9`ed."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'platform'}:{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(buf), exp],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    run, last = "", -1
    deadline = time.monotonic() + 90
    while last < 40 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        run, step = line.split()
        last = int(step)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    return run, last


@pytest.fixture(scope="module")
def outage(postgres_server: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """One mlflow server on PostgreSQL, killed once and restarted once on the same port
    (server starts dominate this module's time)."""
    from mlflow import MlflowClient

    from mlplat.experiment import BufferedTracker

    db_url = create_database(postgres_server.port, "mlplat_tracking_outage")
    workdir = tmp_path_factory.mktemp("mlflow-outage")
    server = start_mlflow_server(workdir, db_url)
    o = Outage(url=server.url)
    try:
        c = MlflowClient(tracking_uri=server.url)
        o.exp_a, o.exp_b = c.create_experiment("outage-a"), c.create_experiment("outage-b")
        artifact = workdir / "notes.txt"
        artifact.write_text("written while the server was down\n")
        tracker = BufferedTracker(server.url, workdir / "a.db", probe_interval_s=0.5)
        o.run_a = tracker.start_run(o.exp_a, "outage-run", tags={"team": "risk"})
        tracker.log_params(o.run_a, {"lr": 0.01, "epochs": 60})
        for step in range(60):
            if step == 20:
                assert tracker.flush(timeout_s=60), "server up: the journal drains"
                server.kill()  # SIGKILL: an outage, not a shutdown
            t0 = time.perf_counter()
            tracker.log_metrics(o.run_a, {"loss": 1.0 / (step + 1), "acc": step / 60}, step=step)
            if step == 30:
                tracker.log_params(o.run_a, {"late_param": "during-outage"})
                tracker.set_tags(o.run_a, {"phase": "outage", "team": "risk"})
                tracker.log_artifact(o.run_a, artifact, "notes")
            o.slowest_log_s = max(o.slowest_log_s, time.perf_counter() - t0)
            if step == 20:  # the first write after the kill: the flusher fails on it
                o.breaker_open_s = _wait(lambda: tracker.stats().breaker == "open", 10, "open")
        tracker.end_run(o.run_a)
        o.pending_during_outage = tracker.stats().pending
        # While the server is down, a second job logs and is killed with SIGKILL.
        o.run_b, o.last_step_b = _killed_client(server.url, workdir / "b.db", o.exp_b)

        server = start_mlflow_server(workdir, db_url, port=server.port)
        o.closed_a = tracker.close(timeout_s=90)
        # The restarted job opens the same journal and replays what the killed one left.
        o.closed_b = BufferedTracker(server.url, workdir / "b.db").close(timeout_s=90)
        yield o
    finally:
        server.stop()


def _client(o: Outage):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=o.url)


def test_server_killed_mid_run_loses_and_duplicates_nothing(outage: Outage) -> None:
    from mlplat.experiment import RUN_TAG

    assert outage.breaker_open_s <= 1.0, f"breaker took {outage.breaker_open_s:.2f}s to open"
    assert outage.slowest_log_s < 0.5, f"a log call took {outage.slowest_log_s:.3f}s (server dead)"
    assert outage.pending_during_outage > 0 and outage.closed_a
    c = _client(outage)
    [found] = c.search_runs([outage.exp_a], filter_string=f"tags.`{RUN_TAG}` = '{outage.run_a}'")
    assert found.info.status == "FINISHED"
    for key in ("loss", "acc"):
        steps = [m.step for m in c.get_metric_history(found.info.run_id, key)]
        assert steps == list(range(60)), f"{key}: {steps}"
    assert found.data.params == {"lr": "0.01", "epochs": "60", "late_param": "during-outage"}
    assert found.data.tags["phase"] == "outage" and found.data.tags["team"] == "risk"
    [art] = c.list_artifacts(found.info.run_id, "notes")
    assert art.path == "notes/notes.txt"
    assert len(c.search_runs([outage.exp_a])) == 1, "exactly one server run"


def test_client_killed_mid_outage_replays_on_restart(outage: Outage) -> None:
    from mlplat.experiment import RUN_TAG

    assert outage.last_step_b >= 40, "the child logged while the server was down"
    assert outage.closed_b
    c = _client(outage)
    [found] = c.search_runs([outage.exp_b], filter_string=f"tags.`{RUN_TAG}` = '{outage.run_b}'")
    steps = [m.step for m in c.get_metric_history(found.info.run_id, "loss")]
    last = outage.last_step_b
    # Every step acknowledged before the kill is there, once, in order (one more may have
    # been committed between the last print and the kill).
    assert steps[: last + 1] == list(range(last + 1)) and len(steps) in (last + 1, last + 2)
    assert found.data.params == {"seed": "7"}
