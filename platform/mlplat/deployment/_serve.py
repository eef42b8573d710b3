"""The router as a Ray Serve deployment: a thin FastAPI shell over ``RouterCore``.

Imported only when an app is deployed (it pulls in Ray Serve and FastAPI). No
``from __future__ import annotations`` here: FastAPI must see real classes (``Request``) in the
route signatures that Serve's ingress re-wraps.
"""

import asyncio
import os
import time
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.deployment._router import RouterCore, deliver
from mlplat.deployment._types import (
    ExperimentPlaneLoader,
    FeatureLookupFactory,
    ModelLoader,
    online_feature_lookup,
)

DRIFT_MONITOR_ACTOR = "mlplat-drift-monitor"
MLPLAT_NAMESPACE = "mlplat"
ROUTER_DEPLOYMENT = "router"

_http = FastAPI(title="mlplat model router", docs_url=None, redoc_url=None)


class _DriftMonitorSink:
    """Fire-and-forget ``record.remote`` to the drift monitor; False while it is absent."""

    def __init__(self, retry_after_s: float) -> None:
        self._actor: Any = None
        self._retry_after_s = retry_after_s
        self._next_lookup = 0.0

    def __call__(self, model: str, version: str, rows: list[dict[str, Any]],
                 scores: list[float]) -> bool:
        if self._actor is None:
            now = time.monotonic()
            if now < self._next_lookup:
                return False
            try:
                self._actor = ray.get_actor(DRIFT_MONITOR_ACTOR, namespace=MLPLAT_NAMESPACE)
            except ValueError:
                # Not deployed (yet): look again next flush rather than on every batch.
                self._next_lookup = now + self._retry_after_s
                return False
        try:
            self._actor.record.remote(model, version, rows, scores)  # not awaited: off-path
        except Exception:  # actor gone: forget it, look it up again later
            self._actor = None
            return False
        return True


@serve.deployment(name=ROUTER_DEPLOYMENT)
@serve.ingress(_http)
class RouterDeployment:
    """Ingress of one app: ``POST /predict``, ``GET /split``, ``GET /healthz``.

    Init args are the build (config, app, loader, feature lookup factory, build id) and never
    change without a restart; the traffic split arrives through ``user_config``/``reconfigure``.
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        app: AppConfig,
        loader: ModelLoader | None,
        feature_lookup: FeatureLookupFactory | None,
        build_id: str,
    ) -> None:
        self._build = {"cfg": cfg, "app": app, "loader": loader,
                       "feature_lookup": feature_lookup, "build_id": build_id}
        lookup = (feature_lookup or online_feature_lookup)(cfg, app)
        self._core = RouterCore(
            app.name,
            app.features,
            app.serving.threshold,
            loader or ExperimentPlaneLoader(cfg),
            lookup,
            drift_sample_rate=app.serving.drift_sample_rate,
        )
        self._sink = _DriftMonitorSink(self._core.tuning.drift_flush_interval_s)
        self._drift_task: asyncio.Task[None] | None = None
        self._started_at = time.time()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the new ``user_config``; no restart, no dropped requests."""
        self._core.apply(user_config)

    # ------------------------------------------------------------------ HTTP routes

    @_http.post("/predict")
    async def predict(self, request: Request) -> JSONResponse:
        self._ensure_drift_loop()
        status, body, job = self._core.respond(await request.body())
        if job is not None:
            self._core.submit_shadow(job)
        return JSONResponse(body, status_code=status)

    @_http.get("/split")
    async def split_route(self) -> dict[str, Any]:
        return self.stats()

    @_http.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": self._core.model_name is not None,
                "loaded_versions": self._core.loaded_versions}

    # ------------------------------------------------------------------ handle methods

    def stats(self) -> dict[str, Any]:
        """Router counters plus which replica answered (so callers can tell restarts)."""
        ctx = serve.get_replica_context()
        return {
            **self._core.stats(),
            "replica": {
                "replica_id": ctx.replica_id.unique_id,
                "actor_id": ray.get_runtime_context().get_actor_id(),
                "pid": os.getpid(),
                "started_at": self._started_at,
                "build_id": self._build["build_id"],
            },
        }

    def split_state(self) -> dict[str, Any]:
        return self._core.split.model_dump(mode="json")

    def build_info(self) -> dict[str, Any]:
        """The init args this replica was built with, so a split change can reuse them."""
        return {**self._build, "model": self._core.model_name}

    # ------------------------------------------------------------------ drift (off-path)

    def _ensure_drift_loop(self) -> None:
        if self._drift_task is None or self._drift_task.done():
            self._drift_task = asyncio.get_running_loop().create_task(self._drift_loop())

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self._core.tuning.drift_flush_interval_s)
            batches = self._core.drift.drain(self._core.tuning.drift_batch_size)
            if batches:
                # get_actor talks to the GCS: keep that off the event loop serving requests.
                delivered, undelivered = await asyncio.to_thread(deliver, batches, self._sink)
                self._core.drift.account(delivered, undelivered)

    def __del__(self) -> None:
        self._core.close()
