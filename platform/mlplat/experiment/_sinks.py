"""Where the buffered tracker delivers writes: the MLflow REST API or a local MLflow store.

``RestSink`` speaks MLflow's REST API with ``requests`` directly, one attempt per call and a
short timeout, so a dead server costs a connection refusal (or ``timeout_s``), never MLflow's
own retry loop (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` defaults to minutes of back-off, and its
environment variables are process-wide, so changing them would slow every other client in
the process). ``ClientSink`` wraps ``MlflowClient`` for the embedded SQLite store, which has
no network to lose.

Both raise ``SinkUnavailable`` for "the server may or may not have applied this" (connection
error, timeout, 5xx) and ``SinkRejected`` for "the server refused this write" (4xx): the first
is retried after the breaker allows, the second never is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlparse


class SinkUnavailable(Exception):
    """The server did not answer (or answered 5xx): the write's outcome is unknown."""


class SinkRejected(Exception):
    """The server answered 4xx: retrying the same write cannot succeed."""


@dataclass(frozen=True)
class MetricPoint:
    """One metric value as MLflow stores it."""

    key: str
    value: float
    timestamp_ms: int
    step: int


class Sink(Protocol):
    """What the tracker needs from a tracking backend (every method raises SinkUnavailable or
    SinkRejected, nothing else)."""

    def create_run(
        self, experiment_id: str, run_name: str, start_ms: int, tags: dict[str, str]
    ) -> str:
        """Create a run; returns its id."""

    def find_run(self, experiment_id: str, tag_key: str, tag_value: str) -> str | None:
        """Id of the run in ``experiment_id`` tagged ``tag_key=tag_value``, if any."""

    def log_batch(
        self,
        run_id: str,
        metrics: list[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        """One MLflow ``log_batch`` call."""

    def params(self, run_id: str) -> dict[str, str]:
        """The run's params as the server has them."""

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every stored value of metric ``key``."""

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str) -> None:
        """Upload one file under ``artifact_path`` (folder, may be empty)."""

    def set_terminated(self, run_id: str, status: str, end_ms: int) -> None:
        """Mark the run finished/failed/killed."""

    def ping(self) -> None:
        """A cheap request that succeeds when the server is up."""


class RestSink:
    """MLflow REST API over ``requests``: no retries, ``timeout_s`` per request.

    Example:
        >>> sink = RestSink("http://127.0.0.1:5000", timeout_s=0.5)
        >>> sink.ping()
    """

    def __init__(self, uri: str, timeout_s: float = 2.0, connect_timeout_s: float = 0.5) -> None:
        import requests

        self._base = uri.rstrip("/")
        self._timeout = (connect_timeout_s, timeout_s)
        self._session = requests.Session()  # no HTTPAdapter retries: one attempt per call
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._artifact_uris: dict[str, str] = {}

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import requests

        try:
            resp = self._session.request(
                method, f"{self._base}{path}", timeout=self._timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise SinkUnavailable(f"{method} {path}: {exc}") from exc
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise SinkUnavailable(f"{method} {path}: HTTP {resp.status_code} {resp.text[:200]}")
        if resp.status_code >= 400:
            raise SinkRejected(f"{method} {path}: HTTP {resp.status_code} {resp.text[:500]}")
        try:
            body = resp.json() if resp.content else {}
        except ValueError as exc:
            raise SinkUnavailable(f"{method} {path}: non-JSON answer {resp.text[:200]}") from exc
        return body if isinstance(body, dict) else {}

    def ping(self) -> None:
        self._call("GET", "/health")

    def create_run(
        self, experiment_id: str, run_name: str, start_ms: int, tags: dict[str, str]
    ) -> str:
        body = self._call(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json={
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_ms,
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )
        return str(body["run"]["info"]["run_id"])

    def find_run(self, experiment_id: str, tag_key: str, tag_value: str) -> str | None:
        body = self._call(
            "POST",
            "/api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{tag_key}` = '{tag_value}'",
                "max_results": 1,
            },
        )
        runs = body.get("runs") or []
        return str(runs[0]["info"]["run_id"]) if runs else None

    def log_batch(
        self,
        run_id: str,
        metrics: list[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [
                    {"key": m.key, "value": m.value, "timestamp": m.timestamp_ms, "step": m.step}
                    for m in metrics
                ],
                "params": [{"key": k, "value": v} for k, v in params.items()],
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )

    def _run(self, run_id: str) -> dict[str, Any]:
        body = self._call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        run: dict[str, Any] = body["run"]
        self._artifact_uris[run_id] = str(run["info"].get("artifact_uri", ""))
        return run

    def params(self, run_id: str) -> dict[str, str]:
        data = self._run(run_id).get("data", {})
        return {p["key"]: p["value"] for p in data.get("params", [])}

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        out: list[MetricPoint] = []
        token: str | None = None
        while True:
            query: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                query["page_token"] = token
            body = self._call("GET", "/api/2.0/mlflow/metrics/get-history", params=query)
            out.extend(
                MetricPoint(key, float(m["value"]), int(m["timestamp"]), int(m.get("step", 0)))
                for m in body.get("metrics", [])
            )
            token = body.get("next_page_token")
            if not token:
                return out

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str) -> None:
        uri = self._artifact_uris.get(run_id) or str(self._run(run_id)["info"]["artifact_uri"])
        name = f"{artifact_path.strip('/')}/{local_path.name}".lstrip("/")
        if uri.startswith("mlflow-artifacts:"):
            # Proxied artifacts (`mlflow server --artifacts-destination`): PUT through the server.
            base = urlparse(uri).path.lstrip("/")
            with local_path.open("rb") as fh:
                self._call(
                    "PUT",
                    f"/api/2.0/mlflow-artifacts/artifacts/{quote(base)}/{quote(name)}",
                    data=fh,
                )
            return
        try:  # direct storage (s3://, file://): MLflow's artifact repository for that scheme
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            get_artifact_repository(uri).log_artifact(str(local_path), artifact_path or None)
        except OSError as exc:
            raise SinkUnavailable(f"upload of {local_path} to {uri}: {exc}") from exc

    def set_terminated(self, run_id: str, status: str, end_ms: int) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/runs/update",
            json={"run_id": run_id, "status": status, "end_time": end_ms},
        )


class ClientSink:
    """``MlflowClient`` on a local store (SQLite): nothing to time out, same error mapping.

    Example:
        >>> ClientSink("sqlite:////tmp/mlflow.db").ping()
    """

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=uri)

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if exc.get_http_status_code() >= 500:
                raise SinkUnavailable(str(exc)) from exc
            raise SinkRejected(str(exc)) from exc
        except OSError as exc:
            raise SinkUnavailable(str(exc)) from exc

    def ping(self) -> None:
        self._guard(self._client.search_experiments, max_results=1)

    def create_run(
        self, experiment_id: str, run_name: str, start_ms: int, tags: dict[str, str]
    ) -> str:
        run = self._guard(
            self._client.create_run, experiment_id, start_time=start_ms, tags=tags,
            run_name=run_name,
        )
        return str(run.info.run_id)

    def find_run(self, experiment_id: str, tag_key: str, tag_value: str) -> str | None:
        runs = self._guard(
            self._client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{tag_key}` = '{tag_value}'",
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    def log_batch(
        self,
        run_id: str,
        metrics: list[MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self._guard(
            self._client.log_batch,
            run_id,
            metrics=[Metric(m.key, m.value, m.timestamp_ms, m.step) for m in metrics],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self._guard(self._client.get_run, run_id).data.params)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        return [
            MetricPoint(m.key, float(m.value), int(m.timestamp), int(m.step))
            for m in self._guard(self._client.get_metric_history, run_id, key)
        ]

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str) -> None:
        self._guard(self._client.log_artifact, run_id, str(local_path), artifact_path or None)

    def set_terminated(self, run_id: str, status: str, end_ms: int) -> None:
        self._guard(self._client.set_terminated, run_id, status, end_ms)


def sink_for(uri: str, timeout_s: float = 2.0) -> Sink:
    """``RestSink`` for ``http(s)://`` tracking URIs, ``ClientSink`` for local stores.

    Example:
        >>> type(sink_for("http://127.0.0.1:5000")).__name__
        'RestSink'
    """
    if uri.startswith(("http://", "https://")):
        return RestSink(uri, timeout_s=timeout_s, connect_timeout_s=min(0.5, timeout_s))
    return ClientSink(uri)
