"""The OpenAI-compatible Serve app of the embedded engine: a thin FastAPI shell over ``LLMCore``.

Imported only when the app is deployed (it pulls in Ray Serve and FastAPI). No
``from __future__ import annotations``: FastAPI must see real classes in route signatures.
"""

import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from mlplat.config import PlatformConfig
from mlplat.llm._config import LLMAppConfig
from mlplat.llm._core import LLMCore
from mlplat.llm._engine import AppEngineLoader, LLMEngineLoader
from mlplat.llm._metrics import RayTokenMetrics
from mlplat.llm._schemas import ChatCompletionRequest, CompletionRequest

LLM_DEPLOYMENT = "llm"

_http = FastAPI(title="mlplat LLM (OpenAI-compatible)", docs_url=None, redoc_url=None)


@serve.deployment(name=LLM_DEPLOYMENT)
@serve.ingress(_http)
class LLMDeployment:
    """``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream: true`` → SSE),
    ``GET /v1/models``, ``GET /stats`` (token counters, cost), ``GET /healthz``.
    """

    def __init__(self, cfg: PlatformConfig, app: LLMAppConfig,
                 loader: LLMEngineLoader | None = None) -> None:
        loader = loader or AppEngineLoader(cfg, app)
        engine = loader(app.model.name, app.model.version)
        metrics = RayTokenMetrics({"app": app.name, "model": app.model.name,
                                   "version": app.model.version, "engine": engine.engine_type})
        self._core = LLMCore(cfg, app, engine, metrics.observe)
        self._started_at = time.time()

    async def _serve(self, request: Request, schema: Any) -> Any:
        status, body, stream = await self._core.handle(await request.body(), schema)
        if stream is not None:
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return JSONResponse(body, status_code=status)

    @_http.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Any:
        return await self._serve(request, ChatCompletionRequest)

    @_http.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        return await self._serve(request, CompletionRequest)

    @_http.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return self._core.models()

    @_http.get("/stats")
    async def stats(self) -> dict[str, Any]:
        return {**self._core.stats(), "pid": os.getpid(), "started_at": self._started_at}

    @_http.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"ok": True, "model": self._core.engine.model, "version": self._core.engine.version}
