"""BufferedTracker against a real embedded MLflow store (SQLite): the breaker, the journal and
idempotent replay when a send's outcome is unknown. The real-server outage (kill -9 of
`mlflow server` and of the client) is tests/integration/test_tracking_outage.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlplat.errors import UserError
from mlplat.experiment import BufferedTracker, CircuitBreaker
from mlplat.experiment._sinks import ClientSink, SinkUnavailable


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_threshold_or_one_timeout_and_probes() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, probe_interval_s=1.0, clock=clock)
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow() and b.seconds_until_probe() == 1.0
    clock.t = 1.0
    assert b.state == "half_open" and b.allow()
    b.record_failure()  # the probe failed: open again for another interval
    assert b.state == "open" and b.seconds_until_probe() == 1.0
    clock.t = 2.5
    b.record_success()
    assert b.state == "closed" and b.opened_count == 1  # closed → open transitions
    b.record_failure(timeout=True)  # one timeout is enough
    assert b.state == "open"
    with pytest.raises(UserError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)


class LostAnswers:
    """A real ClientSink whose first ``lose`` log_batch answers are lost after the write was
    applied (as when a connection drops after the server committed): the worst case for
    duplicates. Then it behaves."""

    def __init__(self, inner: ClientSink, lose: int) -> None:
        self.inner, self.lose, self.calls = inner, lose, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_batch(self, *args: Any) -> None:
        self.inner.log_batch(*args)
        self.calls += 1
        if self.calls <= self.lose:
            raise SinkUnavailable("read timed out")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('tracker')}/mlflow.db"
    return uri, MlflowClient(uri).create_experiment("tracker-unit")


def test_lost_answers_are_verified_not_duplicated(store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri, exp = store
    sink = LostAnswers(ClientSink(uri), lose=2)
    t = BufferedTracker(uri, tmp_path / "buf.db", sink=sink, probe_interval_s=0.05,
                        flush_interval_s=0)
    run = t.start_run(exp, "lost-answers", {"team": "risk"})
    t.log_params(run, {"lr": 0.1, "epochs": 3})
    for step in range(50):
        t.log_metrics(run, {"loss": 1 / (step + 1)}, step=step)
    t.set_tags(run, {"phase": "a"})
    t.set_tags(run, {"phase": "b"})  # last write wins
    t.end_run(run)
    assert t.close(timeout_s=30), t.stats()
    assert sink.calls > 2
    c = MlflowClient(uri)
    [found] = c.search_runs([exp], filter_string=f"tags.`mlplat.tracker_run` = '{run}'")
    history = c.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in history] == list(range(50))
    assert found.data.params == {"lr": "0.1", "epochs": "3"}
    assert found.data.tags["phase"] == "b" and found.info.status == "FINISHED"


class Dead:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise SinkUnavailable("connection refused")

        return fail


def test_journal_outlives_the_process_and_replays_once(store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri, exp = store
    buf = tmp_path / "job.db"
    t = BufferedTracker(uri, buf, sink=Dead(), probe_interval_s=0.05)  # type: ignore[arg-type]
    run = t.start_run(exp, "outage")
    for step in range(20):
        t.log_metrics(run, {"acc": step / 20}, step=step)
    artifact = tmp_path / "report.txt"
    artifact.write_text("hello")
    t.log_artifact(run, artifact, "reports")
    artifact.unlink()  # the spool holds its own copy
    with pytest.raises(UserError, match="in use by another live process"):
        BufferedTracker(uri, buf)
    assert not t.flush(timeout_s=0.3)
    assert t.stats().breaker == "open" and t.stats().pending == 22  # 20 metrics, artifact, run
    assert not t.close(timeout_s=0)
    rows = sqlite3.connect(buf).execute("SELECT COUNT(*) FROM ops").fetchone()[0]
    assert rows == 21

    again = BufferedTracker(uri, buf)  # the restarted job: same journal, store reachable
    assert again.close(timeout_s=30), again.stats()
    c = MlflowClient(uri)
    [found] = c.search_runs([exp], filter_string=f"tags.`mlplat.tracker_run` = '{run}'")
    assert [m.step for m in c.get_metric_history(found.info.run_id, "acc")] == list(range(20))
    assert [f.path for f in c.list_artifacts(found.info.run_id, "reports")] == [
        "reports/report.txt"]


def test_rejected_writes_are_kept_and_do_not_block(store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri, exp = store
    t = BufferedTracker(uri, tmp_path / "rej.db")
    run = t.start_run(exp, "rejected")
    t.log_params(run, {"lr": 0.1})
    assert t.flush(30)
    t.log_params(run, {"lr": 0.2})  # MLflow refuses to change a param
    t.log_metrics(run, {"loss": 0.5}, step=1)
    assert t.flush(30)
    assert t.stats().rejected == 1  # only the bad row: the batch was split to find it
    server = t.server_run_id(run)
    t.close()
    assert server is not None
    assert MlflowClient(uri).get_run(server).data.metrics == {"loss": 0.5}
