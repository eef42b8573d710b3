"""The OpenAI-compatible Serve app of the embedded engine: a thin FastAPI shell over
``LLMRouter`` (split, shadow, SLO counters) and one ``LLMCore`` per loaded version.

Imported only when the app is deployed (it pulls in Ray Serve and FastAPI). No
``from __future__ import annotations``: FastAPI must see real classes in route signatures.
"""

import asyncio
import os
import time
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from mlplat.config import PlatformConfig
from mlplat.llm._config import LLMAppConfig
from mlplat.llm._core import LLMCore
from mlplat.llm._engine import AppEngineLoader, LLMEngineLoader
from mlplat.llm._metrics import RayTokenMetrics, TokenAccounting
from mlplat.llm._router import VERSION_HEADER, LLMRouter
from mlplat.llm._schemas import ChatCompletionRequest, CompletionRequest

LLM_DEPLOYMENT = "llm"

_http = FastAPI(title="mlplat LLM (OpenAI-compatible)", docs_url=None, redoc_url=None)


@serve.deployment(name=LLM_DEPLOYMENT)
@serve.ingress(_http)
class LLMDeployment:
    """``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream: true`` → SSE),
    ``GET /v1/models``, ``GET /stats`` (token counters, cost), ``GET /split`` (router and
    shadow report), ``GET /healthz``. Every answer names its version (``x-mlplat-version``).
    """

    def __init__(self, cfg: PlatformConfig, app: LLMAppConfig,
                 loader: LLMEngineLoader | None = None, guard: str | None = None,
                 build_id: str = "") -> None:
        self._cfg, self._app = cfg, app
        self._build = {"cfg": cfg, "app": app, "loader": loader, "guard": guard,
                       "build_id": build_id}
        if app.serving.placement == "deployments":  # `loader` is the version replicas'
            from mlplat.llm._remote import RemoteEngineLoader

            self._loader: LLMEngineLoader = RemoteEngineLoader(
                serve.get_replica_context().app_name)
        else:
            self._loader = loader or AppEngineLoader(cfg, app)
        self._router = LLMRouter(app.name, limits=cfg.requests)
        self._accounting = TokenAccounting()
        self._lock = asyncio.Lock()
        self._started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._tokens_sent = 0

    def _core(self, version: str) -> LLMCore:
        engine = self._loader(self._app.model.name, version)
        metrics = RayTokenMetrics({"app": self._app.name, "model": self._app.model.name,
                                   "version": version, "engine": engine.engine_type})
        return LLMCore(self._cfg, self._app, engine, metrics.observe, self._accounting)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """New split: load newly named versions off the event loop, then swap it in."""
        async with self._lock:
            new, to_load = self._router.plan(user_config)
            loaded = {v: await asyncio.to_thread(self._core, v) for v in to_load}
            self._router.commit(new, loaded)

    async def _serve(self, request: Request, schema: Any) -> Any:
        self._ensure_loops()
        status, body, stream, version = await self._router.handle(
            await request.body(), schema, request.headers)
        headers = {VERSION_HEADER: version}
        if stream is not None:
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", **headers})
        return JSONResponse(body, status_code=status, headers=headers)

    @_http.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Any:
        return await self._serve(request, ChatCompletionRequest)

    @_http.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        return await self._serve(request, CompletionRequest)

    @_http.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        stable = self._router.cores[self._router.stable_version()]
        out = stable.models()
        out["data"][0]["versions"] = sorted(self._router.cores, key=int)
        return out

    @_http.get("/stats")
    async def stats(self) -> dict[str, Any]:
        stable = self._router.cores[self._router.stable_version()]
        return {**stable.stats(), "errors": sum(c.errors for c in self._router.cores.values()),
                "versions": sorted(self._router.cores, key=int),
                "pid": os.getpid(), "started_at": self._started_at,
                "placement": self._app.serving.placement,
                "served_by": {v: {"pid": getattr(c.engine, "remote_pid", os.getpid()),
                                  "device": str(getattr(c.engine, "device", "cpu"))}
                              for v, c in self._router.cores.items()}}

    @_http.get("/split")
    async def split_route(self) -> dict[str, Any]:
        return self.router_stats()

    @_http.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": bool(self._router.cores), "model": self._app.model.name,
                "versions": sorted(self._router.cores, key=int)}

    # ------------------------------------------------------------------ handle methods

    def router_stats(self) -> dict[str, Any]:
        return {**self._router.stats(), "replica": serve.get_replica_context().replica_id.unique_id,
                "pid": os.getpid()}

    async def user_config_state(self) -> dict[str, Any] | None:
        """The whole ``user_config`` in force (split, stable, faults, tuning)."""
        config = self._router.config
        return config.model_dump(mode="json") if config else None

    async def split_state(self) -> dict[str, Any]:
        return self._router.split.model_dump(mode="json")

    async def build_info(self) -> dict[str, Any]:
        """Init args and the current ``user_config``, so a traffic change reuses the build."""
        config = self._router.config
        return {**self._build, "user_config": config.model_dump(mode="json") if config else None}

    # ------------------------------------------------------------------ off-path pushes

    def _ensure_loops(self) -> None:
        if self._tasks and all(not t.done() for t in self._tasks):
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._cost_loop())]
        if self._build["guard"]:
            self._tasks.append(loop.create_task(self._slo_loop()))

    async def _slo_loop(self) -> None:
        """Cumulative per-version counters + the split in force → the SLO guard (and, live +
        shadow, its promotion controller)."""
        from mlplat.cluster import PLATFORM_NAMESPACE

        replica = serve.get_replica_context().replica_id.unique_id
        name = str(self._build["guard"])
        guard: Any = None
        while True:
            config = self._router.config
            await asyncio.sleep(config.tuning.slo_report_interval_s if config else 0.5)
            snapshot = self._router.slo_snapshot()
            if not snapshot or self._router.config is None:
                continue
            try:
                if guard is None:
                    guard = await asyncio.to_thread(ray.get_actor, name, PLATFORM_NAMESPACE)
                blocked = await asyncio.wait_for(
                    guard.report.remote(self._app.name, replica, snapshot,
                                        self._router.split.model_dump(mode="json"),
                                        self._router.stable_version(),
                                        self._router.promotion_snapshot(),
                                        self._router.shadow_sums()),
                    timeout=max(2.0, 4 * (config.tuning.slo_report_interval_s
                                          if config else 0.5)))
                self._router.set_blocked(blocked)
            except Exception:  # guard absent or restarting: the next push carries the totals
                guard = None

    async def _cost_loop(self) -> None:
        """Completion tokens → the cost meter (fire-and-forget; absent meter: kept for later)."""
        from mlplat.cluster import COST_METER_ACTOR, PLATFORM_NAMESPACE

        meter: Any = None
        while True:
            await asyncio.sleep(self._cfg.active_profile().monitoring_timing.cost_sample_s)
            total = self._accounting.completion_tokens
            if total <= self._tokens_sent:
                continue
            try:
                if meter is None:
                    meter = await asyncio.to_thread(ray.get_actor, COST_METER_ACTOR,
                                                    PLATFORM_NAMESPACE)
                meter.record_tokens.remote(self._app.model.name, total - self._tokens_sent)
                self._tokens_sent = total
            except Exception:
                meter = None
