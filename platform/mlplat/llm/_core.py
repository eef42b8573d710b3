"""Request handling of the OpenAI-compatible app, independent of Serve (unit-testable).

``LLMCore.handle`` parses and validates a body *before* any generation starts, so a bad request
is always a 4xx naming the field — also for ``stream: true``, where the status line is sent
before the first token.

Example:
    >>> core = LLMCore(cfg, app, engine)                          # doctest: +SKIP
    >>> status, body, stream = await core.handle(raw, ChatCompletionRequest)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from mlplat.errors import MlplatError, did_you_mean
from mlplat.llm._engine import GenerationStats, LLMEngine, SamplingParams, check_budget
from mlplat.llm._metrics import TokenAccounting
from mlplat.llm._schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    FinishReason,
    LLMRequestError,
    Usage,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    new_id,
    parse_request,
    sse,
)

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig

log = logging.getLogger(__name__)

Observer = Callable[[GenerationStats, str], None]
"""``(stats, status)`` after each generation; status is ``ok`` or ``error``."""


class LLMCore:
    """Validates requests, runs the engine, shapes OpenAI responses and counts tokens."""

    def __init__(self, cfg: PlatformConfig, app: LLMAppConfig, engine: LLMEngine,
                 observe: Observer | None = None,
                 accounting: TokenAccounting | None = None) -> None:
        self.cfg = cfg
        self.app = app
        self.engine = engine
        # Shared by the versions of one replica: the replica's cost is paid whichever answers.
        self.accounting = accounting if accounting is not None else TokenAccounting()
        self._observe = observe
        self.errors = 0

    # ------------------------------------------------------------------ validation

    def _prepare(self, req: ChatCompletionRequest | CompletionRequest
                 ) -> tuple[str, SamplingParams, str]:
        if req.model != self.engine.model:
            raise LLMRequestError(
                f"model: '{req.model}' is not served here.{did_you_mean(req.model, [self.engine.model])} "
                f"This endpoint serves ['{self.engine.model}'] (GET /v1/models).", "model", 404,
            )
        limits = self.app.transformers
        max_tokens = req.max_tokens or limits.default_max_tokens
        if max_tokens > limits.max_tokens_limit:
            raise LLMRequestError(
                f"max_tokens: {max_tokens} exceeds this deployment's limit of "
                f"{limits.max_tokens_limit}; ask for fewer.", "max_tokens",
            )
        if isinstance(req, ChatCompletionRequest):
            prompt, field = self.engine.render_chat(req.messages), "messages"
        else:
            prompt, field = req.prompt, "prompt"
        params = SamplingParams(max_tokens=max_tokens, temperature=req.temperature,
                                top_p=req.top_p, stop=tuple(req.stop_list()), seed=req.seed)
        check_budget(self.engine.count_tokens(prompt), params, self.engine.context_length, field)
        return prompt, params, field

    async def handle(self, raw: bytes | str,
                     schema: type[ChatCompletionRequest] | type[CompletionRequest],
                     observe: Observer | None = None, *, force_stream: bool | None = None
                     ) -> tuple[int, dict[str, Any] | None, AsyncIterator[str] | None]:
        """Returns ``(status, json_body, None)`` or ``(200, None, sse_lines)`` for streams.

        Args:
            raw: The request body.
            schema: Chat or completion request model.
            observe: Also told ``(stats, status)`` of this one generation (the router's SLO
                counters); not called for a 4xx.
            force_stream: Override the body's ``stream`` (a shadow copy is always collected).
        """
        try:
            req: ChatCompletionRequest | CompletionRequest = parse_request(raw, schema, self.cfg.requests)  # type: ignore[type-var]
            prompt, params, field = self._prepare(req)
        except LLMRequestError as exc:
            return exc.http_status, exc.body(), None
        rid = new_id("chatcmpl" if isinstance(req, ChatCompletionRequest) else "cmpl")
        if req.stream if force_stream is None else force_stream:
            return 200, None, self._sse(req, rid, prompt, params, field, observe)
        stats = GenerationStats()
        try:
            text, finish = await self._collect(prompt, params, stats, field, observe)
        except LLMRequestError as exc:
            return exc.http_status, exc.body(), None
        except Exception as exc:
            return self._failed(exc, stats, observe)
        usage = self._usage(stats)
        shape = chat_response if isinstance(req, ChatCompletionRequest) else completion_response
        return 200, shape(rid, req.model, text, finish, usage), None

    # ------------------------------------------------------------------ generation

    async def _collect(self, prompt: str, params: SamplingParams, stats: GenerationStats,
                       field: str, observe: Observer | None = None) -> tuple[str, FinishReason]:
        parts: list[str] = []
        finish: FinishReason = "length"
        async for delta in self.engine.stream(prompt, params, stats, prompt_field=field):
            parts.append(delta.text)
            finish = delta.finish_reason or finish
        self._done(stats, observe)
        return "".join(parts), finish

    async def _sse(self, req: ChatCompletionRequest | CompletionRequest, rid: str, prompt: str,
                   params: SamplingParams, field: str, observe: Observer | None = None
                   ) -> AsyncIterator[str]:
        chat = isinstance(req, ChatCompletionRequest)
        stats = GenerationStats()
        if chat:
            yield sse(chat_chunk(rid, req.model, {"role": "assistant", "content": ""}, None))
        try:
            async for delta in self.engine.stream(prompt, params, stats, prompt_field=field):
                if delta.text or delta.finish_reason:
                    yield sse(
                        chat_chunk(rid, req.model, {"content": delta.text} if delta.text else {},
                                   delta.finish_reason)
                        if chat else completion_chunk(rid, req.model, delta.text,
                                                      delta.finish_reason)
                    )
        except Exception as exc:  # the status line is gone: report in-band, as OpenAI does
            _, body, _ = self._failed(exc, stats, observe)
            yield sse(body or {"error": {"message": str(exc)}})
            yield sse("[DONE]")
            return
        self._done(stats, observe)
        if req.stream_options and req.stream_options.include_usage:
            usage: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                     "model": req.model, "choices": [], "usage": self._usage(stats).model_dump()}
            yield sse(usage)
        yield sse("[DONE]")

    # ------------------------------------------------------------------ bookkeeping

    def _usage(self, stats: GenerationStats) -> Usage:
        return Usage(prompt_tokens=stats.prompt_tokens,
                     completion_tokens=stats.completion_tokens,
                     total_tokens=stats.prompt_tokens + stats.completion_tokens)

    def _done(self, stats: GenerationStats, observe: Observer | None = None) -> None:
        self.accounting.observe(stats)
        for hook in (self._observe, observe):
            if hook is not None:
                hook(stats, "ok")

    def _failed(self, exc: BaseException, stats: GenerationStats,
                observe: Observer | None = None) -> tuple[int, dict[str, Any], None]:
        self.errors += 1
        for hook in (self._observe, observe):
            if hook is not None:
                hook(stats, "error")
        status = exc.http_status if isinstance(exc, MlplatError) else 500
        log.exception("generation failed")
        return status, {"error": {"message": f"generation failed: {type(exc).__name__}: {exc}",
                                  "type": "server_error", "param": None, "code": None}}, None

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.engine.model, "object": "model", "owned_by": self.app.team,
            "version": self.engine.version, "engine": self.engine.engine_type,
        }]}

    def stats(self) -> dict[str, Any]:
        return {"model": self.engine.model, "version": self.engine.version,
                "engine": self.engine.engine_type, "errors": self.errors,
                **self.accounting.summary(self.cfg, self.app)}
