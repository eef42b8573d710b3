"""OpenAI-compatible request/response bodies (the subset both engines serve).

Requests are strict: an unknown or unsupported field is a 400 naming it, not silently ignored,
so a client never believes a parameter took effect when it did not.

Example:
    >>> req = parse_request(b'{"model": "tiny-chat", "messages": [{"role": "user",'
    ...                     b' "content": "hi"}]}', ChatCompletionRequest)
    >>> req.messages[0].content
    'hi'
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlplat._body import BODY_FIELD as BODY_FIELD
from mlplat._body import load_json_body
from mlplat.config import RequestLimits
from mlplat.errors import RequestError

_DEFAULT_LIMITS = RequestLimits()


class LLMRequestError(RequestError):
    """A request body breaks the API; ``field`` names where (``messages.0.role``)."""

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape, plus the platform's ``field`` key."""
        return {"error": {"message": str(self), "type": "invalid_request_error",
                          "param": self.field, "code": None}, "field": self.field}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamOptions(_Strict):
    include_usage: bool = False


class _SamplingFields(_Strict):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: Literal[1] = Field(1, description="Only one choice per request is served.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(None, description="End-user id: the sticky key for canaries.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("at most 4 non-empty stop strings")
        return v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_SamplingFields):
    prompt: str = Field(description="One prompt (lists of prompts are not served).")


Req = TypeVar("Req", ChatCompletionRequest, CompletionRequest)


def parse_request(raw: bytes | str, schema: type[Req],
                  limits: RequestLimits = _DEFAULT_LIMITS) -> Req:
    """Parse a body; the first problem becomes an ``LLMRequestError`` naming its field.

    Raises:
        LLMRequestError: over the size limit (413, before parsing), not JSON, nested too
            deep, a non-finite number or an integer outside int64, not an object, or a field
            breaks the schema.
    """
    try:
        data = load_json_body(raw, limits)
    except RequestError as exc:
        raise LLMRequestError(str(exc), exc.field, exc.http_status) from exc
    if not isinstance(data, dict):
        raise LLMRequestError(
            f"body must be a JSON object, got {type(data).__name__}.", BODY_FIELD
        )
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        # Drop pydantic's union-branch labels ("str", "list[str]") from the field path.
        while loc and (loc[-1] in {"str", "list[str]", "literal[1]"} or "[" in loc[-1]):
            loc.pop()
        field = ".".join(loc) or BODY_FIELD
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = sorted(schema.model_fields)
            msg = f"unknown or unsupported field; this API accepts {allowed}"
        elif err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        raise LLMRequestError(f"{field}: {msg}", field) from exc


# --------------------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


FinishReason = Literal["stop", "length"]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_response(rid: str, model: str, text: str, finish: FinishReason,
                  usage: Usage) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish}],
        "usage": usage.model_dump(),
    }


def completion_response(rid: str, model: str, text: str, finish: FinishReason,
                        usage: Usage) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": usage.model_dump(),
    }


def chat_chunk(rid: str, model: str, delta: dict[str, str],
               finish: FinishReason | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def completion_chunk(rid: str, model: str, text: str,
                     finish: FinishReason | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event line pair, as OpenAI streams them (``data: [DONE]`` ends)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
