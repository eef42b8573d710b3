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
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.background import BackgroundTask

from mlplat.apps import AppConfig
from mlplat.cluster import DRIFT_MONITOR_ACTOR
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import PredictRequest, TrafficSplit
from mlplat.deployment._router import LIVE, RouterCore, deliver
from mlplat.deployment._types import (
    ExperimentPlaneLoader,
    FeatureLookupFactory,
    ModelLoader,
    online_feature_lookup,
)
from mlplat.deployment._versions import RemoteVersionLoader
from mlplat.deployment._webhook import WebhookError, verify_mlflow_webhook

MLPLAT_NAMESPACE = "mlplat"
ROUTER_DEPLOYMENT = "router"

_http = FastAPI(title="mlplat model router", version="1", docs_url=None, redoc_url=None)
_PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema()}}}}


class WeightsBody(BaseModel):
    """``POST /admin/weights``: a new split (percent per version, summing to 100)."""

    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(min_length=1)
    shadow: str | None = None
    reason: str = Field(min_length=1, max_length=500)
    override: bool = Field(False, description="Incident commander: give weight to a version "
                           "that has not earned it (audited).")


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=50, pattern=r"^[0-9A-Za-z._-]+$")
    reason: str = Field(min_length=1, max_length=500)
    override: bool = Field(False, description="Incident commander: accept gates that could not "
                           "be judged (audited).")


class OverrideBody(BaseModel):
    """The incident commander is whoever's bearer token the request carries."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, "type": "AdminError"},
                        status_code=status)


class _DriftMonitorSink:
    """Fire-and-forget ``record.remote`` to the drift monitor; False while it is absent."""

    def __init__(self, retry_after_s: float) -> None:
        self._actor: Any = None
        self._retry_after_s = retry_after_s
        self._next_lookup = 0.0

    def __call__(self, model: str, version: str, rows: list[dict[str, Any]],
                 scores: list[float], ids: list[str | None]) -> bool:
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
            # Not awaited: off-path. The ids let late outcomes join (KPI).
            self._actor.record.remote(
                model, version, rows, scores,
                None if any(i is None for i in ids) else [str(i) for i in ids])
        except Exception:  # actor gone: forget it, look it up again later
            self._actor = None
            return False
        return True


@serve.deployment(name=ROUTER_DEPLOYMENT)
@serve.ingress(_http)
class RouterDeployment:
    """Ingress of one app: predict, split, health, admin routes and the registry webhook.

    Init args are the build (config, app, loader, feature lookup factory, build id, the
    promotion controller's actor name) and never change without a restart; the traffic split
    arrives through ``user_config``/``reconfigure``.
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        app: AppConfig,
        loader: ModelLoader | None,
        feature_lookup: FeatureLookupFactory | None,
        build_id: str,
        controller: str | None = None,
    ) -> None:
        self._build = {"cfg": cfg, "app": app, "loader": loader,
                       "feature_lookup": feature_lookup, "build_id": build_id,
                       "controller": controller}
        self._cfg = cfg
        self._app = app
        lookup = (feature_lookup or online_feature_lookup)(cfg, app)
        live_loader: ModelLoader = (RemoteVersionLoader(app.name)
                                    if app.serving.placement == "deployments"
                                    else loader or ExperimentPlaneLoader(cfg))
        self._core = RouterCore(
            app.name,
            app.features,
            app.serving.threshold,
            live_loader,
            lookup,
            drift_sample_rate=app.serving.drift_sample_rate,
            shadow_loader=RemoteVersionLoader(app.name),
            limits=cfg.requests,
        )
        self._controller_name = controller
        self._controller: Any = None
        self._sink = _DriftMonitorSink(self._core.tuning.drift_flush_interval_s)
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        self._reconfigure_lock = asyncio.Lock()
        self._registered = False

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the new ``user_config``; no restart, no failed requests.

        New versions load in a worker thread (requests keep being served) and are warmed with
        one scored row before the split that gives them weight is swapped in.
        """
        async with self._reconfigure_lock:
            new, to_load = self._core.plan(user_config)
            fresh = {}
            for key in to_load:
                model = await asyncio.to_thread(self._core.load, key)
                row = self._core.warm_row()
                apredict = getattr(model, "apredict", None)
                if apredict is not None:
                    await apredict([row])
                elif key[2] == LIVE:
                    await asyncio.to_thread(model.predict_proba, [row])
                fresh[key] = model
            self._core.commit(new, fresh)
        if self._controller_name and not self._registered:
            # `serve deploy` path: hand the app to its controller (a known last good version
            # is kept — a restarting replica must not overwrite the controller's decision).
            self._registered = True
            await asyncio.to_thread(self._register)

    def _register(self) -> None:
        from mlplat.deployment._controller_actor import get_controller

        try:
            get_controller(self._cfg, self._controller_name or "").register_app.remote(
                self._app, self._core.model_name, self._core.stable_version(), False)
        except Exception:  # the controller is optional for serving
            self._registered = False

    # ------------------------------------------------------------------ HTTP routes

    @_http.post("/predict", openapi_extra=_PREDICT_BODY)
    async def predict(self, request: Request) -> JSONResponse:
        self._ensure_loops()
        status, body, job = await self._core.respond_async(await request.body())
        # The shadow copy is sent after the answer has gone out (a background task runs once
        # the response body is sent): its handle call never delays the primary response.
        after = BackgroundTask(self._send_shadow, job) if job is not None else None
        return JSONResponse(body, status_code=status, background=after)

    async def _send_shadow(self, job: Any) -> None:
        if getattr(job.model, "apredict", None) is not None:
            self._submit_remote_shadow(job)
        else:
            self._core.submit_shadow(job)

    @_http.get("/split")
    async def split_route(self) -> dict[str, Any]:
        return self.stats()

    @_http.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": self._core.model_name is not None,
                "loaded_versions": self._core.loaded_versions}

    # ------------------------------------------------------------------ admin (bearer token)

    def _token(self, request: Request, action: str) -> str | JSONResponse:
        """The caller's bearer token (the controller resolves and audits whose it is), or a
        401 (audited) when the request carries none."""
        header = request.headers.get("authorization") or ""
        if header.startswith("Bearer ") and header[len("Bearer "):].strip():
            return header[len("Bearer "):].strip()
        client = request.client.host if request.client else "unknown"
        try:
            from mlplat.audit._sink import audit_sink

            audit_sink(self._cfg)(f"anonymous@{client}", f"deployment.admin.{action}",
                                  self._app.name, reason="missing bearer token",
                                  details={"path": request.url.path}, outcome="denied")
        except Exception:
            return _error(503, "the audit log is unavailable; admin actions are refused.")
        return _error(401, "admin routes need 'Authorization: Bearer <your token>' (one token "
                      "per person: platform.yaml security.people).", "authorization")

    async def _controller_call(self, method: str, *args: Any) -> JSONResponse:
        try:
            actor = await asyncio.to_thread(
                ray.get_actor, self._controller_name or "", MLPLAT_NAMESPACE)
        except ValueError:
            return _error(409, f"no promotion controller '{self._controller_name}' runs for app "
                          f"'{self._app.name}'; release it with `mlplat deploy promote "
                          f"{self._app.name} <version> --reason ...`.")
        try:
            result = await getattr(actor, method).remote(*args)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if hasattr(exc, "cause") else exc
            from mlplat.errors import MlplatError

            status = cause.http_status if isinstance(cause, MlplatError) else 500
            return _error(status, str(cause), "authorization" if status == 401 else None)
        return JSONResponse(result, status_code=200)

    @_http.post("/admin/weights")
    async def admin_weights(self, request: Request, body: WeightsBody) -> JSONResponse:
        if isinstance(token := self._token(request, "weights"), JSONResponse):
            return token
        try:
            split = TrafficSplit(weights=body.weights, shadow=body.shadow)
        except ValueError as exc:
            return _error(400, str(exc), "weights")
        return await self._controller_call("set_weights", self._app.name,
                                           split.model_dump(mode="json"), token, body.reason,
                                           body.override)

    @_http.post("/admin/promote")
    async def admin_promote(self, request: Request, body: PromoteBody) -> JSONResponse:
        if isinstance(token := self._token(request, "promote"), JSONResponse):
            return token
        return await self._controller_call("start", self._app.name, body.version, token,
                                           body.reason, "admin-api", body.override)

    @_http.post("/admin/override")
    async def admin_override(self, request: Request, body: OverrideBody) -> JSONResponse:
        if isinstance(token := self._token(request, "override"), JSONResponse):
            return token
        return await self._controller_call("override", self._app.name, token, body.reason)

    @_http.post("/admin/rollback")
    async def admin_rollback(self, request: Request, body: RollbackBody) -> JSONResponse:
        if isinstance(token := self._token(request, "rollback"), JSONResponse):
            return token
        return await self._controller_call("rollback", self._app.name, token, body.reason)

    @_http.post("/webhooks/mlflow")
    async def mlflow_webhook(self, request: Request) -> JSONResponse:
        """MLflow registry webhook (``model_version_alias.created``), HMAC-verified."""
        from mlplat.audit._sink import audit_sink
        from mlplat.secrets import get_secret

        raw = await request.body()
        try:
            event = verify_mlflow_webhook(get_secret(self._cfg, "webhook_secret"),
                                          request.headers, raw, now=time.time())
        except WebhookError as exc:
            try:
                audit_sink(self._cfg)("mlflow-webhook", "deployment.webhook", self._app.name,
                                      reason=str(exc), details={"status": exc.status},
                                      outcome="denied")
            except Exception:
                pass
            return _error(exc.status, str(exc), exc.field)
        data = event.get("data") or {}
        if (event.get("entity"), event.get("action")) != ("model_version_alias", "created") \
                or data.get("alias") != "staging" or data.get("name") != self._core.model_name:
            return JSONResponse({"ignored": True, "reason": "not a staging alias of this "
                                 "app's model"}, status_code=202)
        return await self._controller_call("webhook_staging", str(data["name"]),
                                           str(data["version"]), "mlflow-webhook")

    # ------------------------------------------------------------------ handle methods

    def stats(self) -> dict[str, Any]:
        """Router counters plus which replica answered (so callers can tell restarts)."""
        ctx = serve.get_replica_context()
        return {
            **self._core.stats(),
            "placement": self._app.serving.placement,
            "replica": {
                "replica_id": ctx.replica_id.unique_id,
                "actor_id": ray.get_runtime_context().get_actor_id(),
                "pid": os.getpid(),
                "started_at": self._started_at,
                "build_id": self._build["build_id"],
            },
        }

    async def split_state(self) -> dict[str, Any]:
        return self._core.split.model_dump(mode="json")

    async def user_config_state(self) -> dict[str, Any] | None:
        config = self._core._config
        return config.model_dump(mode="json") if config else None

    async def build_info(self) -> dict[str, Any]:
        """The init args this replica was built with, so a split change can reuse them."""
        return {**self._build, "model": self._core.model_name}

    # ------------------------------------------------------------------ off-path work

    def _submit_remote_shadow(self, job: Any) -> None:
        if not self._core.try_acquire_shadow():
            return
        fault = self._core.fault_for(job.shadow_version)
        args = (fault.error_rate, fault.delay_s) if fault and not fault.live_only else (0.0, 0.0)
        started = time.perf_counter()
        # Not awaited by the request: the caller is answered before the shadow replies.
        task = asyncio.get_running_loop().create_task(job.model.apredict([job.row], *args))

        def done(t: asyncio.Task[list[float]]) -> None:
            ok = not t.cancelled() and t.exception() is None
            self._core.shadow_finished(job, float(t.result()[0]) if ok else None,
                                       (time.perf_counter() - started) * 1000)

        task.add_done_callback(done)

    def _ensure_loops(self) -> None:
        if self._tasks and all(not t.done() for t in self._tasks):
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._drift_loop())]
        if self._controller_name:
            self._tasks.append(loop.create_task(self._slo_loop()))

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self._core.tuning.drift_flush_interval_s)
            batches = self._core.drift.drain(self._core.tuning.drift_batch_size)
            if batches:
                # get_actor talks to the GCS: keep that off the event loop serving requests.
                delivered, undelivered = await asyncio.to_thread(deliver, batches, self._sink)
                self._core.drift.account(delivered, undelivered)

    async def _slo_loop(self) -> None:
        replica = serve.get_replica_context().replica_id.unique_id
        while True:
            await asyncio.sleep(self._core.tuning.slo_report_interval_s)
            snapshot = {v: c.snapshot() for v, c in self._core.slo.items()}
            if not snapshot:
                continue
            try:
                if self._controller is None:
                    self._controller = await asyncio.to_thread(
                        ray.get_actor, self._controller_name or "", MLPLAT_NAMESPACE)
                blocked = await asyncio.wait_for(
                    self._controller.report.remote(self._app.name, replica, snapshot),
                    timeout=max(2.0, 4 * self._core.tuning.slo_report_interval_s))
                self._core.set_blocked(blocked)
            except Exception:  # controller absent or restarting: next push carries the totals
                self._controller = None

    def __del__(self) -> None:
        self._core.close()

