"""``serving.placement: deployments`` for LLM apps: each version in a Serve application of its
own, with its own CPUs/GPUs, streamed from by the router through a handle.

The router replica keeps everything that decides *which* version answers and *how* — split,
stickiness, faults, shadow, SLO counters, request validation — and holds only each version's
tokenizer (to render chats and check the token budget before a stream starts, so a bad request
is still a 4xx). The version replica (``LLMVersionServer``, application ``<app>--v<N>``) holds
the weights and generates. The two speak the ``LLMEngine`` interface: ``RemoteEngine`` is an
engine whose ``stream`` is the version replica's ``generate``.

No ``from __future__ import annotations``: Serve inspects the deployment class.
"""

import dataclasses
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ray import serve

from mlplat.cluster import pool_selector
from mlplat.config import PlatformConfig
from mlplat.deployment import version_app_name
from mlplat.llm._config import LLMAppConfig
from mlplat.llm._engine import (
    AppEngineLoader,
    Delta,
    GenerationStats,
    LLMEngine,
    LLMEngineLoader,
    SamplingParams,
    check_budget,
)
from mlplat.llm._schemas import ChatMessage
from mlplat.llm._transformers import count_tokens, render_chat, tokenizer_from_files

VERSION_DEPLOYMENT = "llm-version"


@serve.deployment(name=VERSION_DEPLOYMENT, logging_config={"enable_access_log": False})
class LLMVersionServer:
    """One loaded version of an LLM: ``generate`` streams deltas; ``meta`` describes it."""

    def __init__(self, cfg: PlatformConfig, app: LLMAppConfig, loader: LLMEngineLoader | None,
                 version: str) -> None:
        self._engine: LLMEngine = (loader or AppEngineLoader(cfg, app))(app.model.name, version)

    async def meta(self) -> dict[str, Any]:
        """What a router needs to validate requests for this version, and where it runs."""
        engine = self._engine
        files = engine.tokenizer_files() if hasattr(engine, "tokenizer_files") else None
        if files is None:
            raise TypeError(f"engine '{engine.engine_type}' cannot hand its tokenizer to a router")
        return {"engine": engine.engine_type, "model": engine.model, "version": engine.version,
                "context_length": engine.context_length, "tokenizer_files": files,
                "device": getattr(engine, "device", "cpu"), "pid": os.getpid()}

    async def generate(self, prompt: str, params: dict[str, Any], prompt_field: str
                       ) -> AsyncIterator[dict[str, Any]]:
        """``{"text", "tokens", "finish"}`` per delta, then ``{"stats": …}`` of the replica."""
        stats = GenerationStats()
        sampling = SamplingParams(**{**params, "stop": tuple(params.get("stop") or ())})
        async for d in self._engine.stream(prompt, sampling, stats, prompt_field=prompt_field):
            yield {"text": d.text, "tokens": d.tokens, "finish": d.finish_reason}
        yield {"stats": {"queue_s": stats.queue_s, "prompt_tokens": stats.prompt_tokens}}


def llm_version_application(cfg: PlatformConfig, app: LLMAppConfig,
                            loader: LLMEngineLoader | None, version: str) -> Any:
    """The bound Serve application of one version (``serving.version_num_cpus/gpus``)."""
    serving = app.serving
    return LLMVersionServer.options(  # type: ignore[attr-defined]
        num_replicas=1,
        max_ongoing_requests=serving.max_ongoing_requests,
        ray_actor_options={"num_cpus": serving.version_num_cpus,
                           "num_gpus": serving.version_num_gpus,
                           "label_selector": pool_selector(serving.pool)},
    ).bind(cfg, app, loader, version)


class RemoteEngine:
    """An ``LLMEngine`` whose generation runs in the version's own Serve application.

    Validation (chat template, token budget) happens here, before the stream starts. Timings
    are the router's view: TTFT includes the hop and the version replica's queue (reported
    back as ``queue_s``), as a client would see it.

    Example:
        >>> engine = RemoteEngine(handle)                     # doctest: +SKIP
        >>> async for delta in engine.stream("hi", SamplingParams(max_tokens=4), stats): ...
    """

    def __init__(self, handle: Any, meta: dict[str, Any] | None = None) -> None:
        self._handle = handle
        meta = meta if meta is not None else handle.meta.remote().result(timeout_s=120)
        self._tok = tokenizer_from_files(meta["tokenizer_files"])
        self.engine_type: str = meta["engine"]
        self._model: str = meta["model"]
        self._version: str = meta["version"]
        self._context_length = int(meta["context_length"])
        self.device: str = meta["device"]
        self.remote_pid: int = meta["pid"]

    @property
    def model(self) -> str:
        return self._model

    @property
    def version(self) -> str:
        return self._version

    @property
    def context_length(self) -> int:
        return self._context_length

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat(self._tok, messages)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self._tok, text)

    async def stream(self, prompt: str, params: SamplingParams, stats: GenerationStats, *,
                     prompt_field: str = "prompt") -> AsyncIterator[Delta]:
        stats.prompt_tokens = self.count_tokens(prompt)
        check_budget(stats.prompt_tokens, params, self._context_length, prompt_field)
        started = time.perf_counter()
        gen = self._handle.options(stream=True).generate.remote(
            prompt, dataclasses.asdict(params), prompt_field)
        finished = False
        try:
            async for item in gen:
                if "stats" in item:
                    remote = item["stats"]
                    stats.queue_s = float(remote["queue_s"])
                    stats.prompt_tokens = int(remote["prompt_tokens"])
                    if stats.ttft_s is not None:  # the replica's queue is reported apart
                        stats.ttft_s = max(0.0, stats.ttft_s - stats.queue_s)
                    stats.generate_s = max(0.0, time.perf_counter() - started - stats.queue_s)
                    finished = True
                    continue
                now = time.perf_counter() - started
                if item["tokens"]:
                    if stats.ttft_s is None:
                        stats.ttft_s = now
                    stats.token_times_s.append(now)
                    stats.completion_tokens += int(item["tokens"])
                yield Delta(item["text"], int(item["tokens"]), item["finish"])
        finally:
            if not finished:  # the client went away (or the replica failed): stop generating
                gen.cancel()


class RemoteEngineLoader:
    """``LLMEngineLoader`` of a router whose versions are ``<app>--v<N>`` applications."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name

    def __repr__(self) -> str:
        return f"RemoteEngineLoader({self.app_name!r})"

    def __call__(self, model: str, version: str) -> RemoteEngine:
        return RemoteEngine(serve.get_app_handle(version_app_name(self.app_name, version)))

