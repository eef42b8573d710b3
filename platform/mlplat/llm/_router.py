"""Versions of an LLM behind one OpenAI endpoint: sticky weighted split, shadow, SLO counters.

The deployment plane's machinery, applied to text: the split is the fraud router's
``SplitPicker`` (BLAKE2b of the request key into 10 000 buckets), the ``user_config`` is its
``RouterUserConfig`` (weights, shadow, stable fallback, fault injection), the live counters are
its ``VersionCounters`` with two extra histograms (``ttft``, ``itl``) that the SLO guard judges
with the plane's ``breach``. What is LLM-specific lives here: the request key (``X-Conversation-Id``
header, else the OpenAI ``user`` field), the version named on every answer, and the shadow
comparison for text.

Plain class, no Ray: unit tests drive it with fake engines. ``_serve.py`` is its Serve shell.

Example:
    >>> router = LLMRouter("llm", limits=cfg.requests)                        # doctest: +SKIP
    >>> router.commit(router.plan({"model": "tiny-chat", "split": {"weights": {"1": 90, "2": 10}}})[0],
    ...               {"1": core1, "2": core2})                               # doctest: +SKIP
    >>> status, body, stream, version = await router.handle(raw, ChatCompletionRequest, headers)
"""

from __future__ import annotations

import asyncio
import difflib
import json
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlplat._body import load_json_body
from mlplat.config import RequestLimits
from mlplat.deployment import (
    InjectedFault,
    RouterUserConfig,
    SplitRouter,
    VersionCounters,
    WindowStats,
    p99_of,
    split_versions,
)
from mlplat.errors import RequestError, UserError
from mlplat.llm._engine import GenerationStats

if TYPE_CHECKING:
    from mlplat.llm._core import LLMCore
    from mlplat.llm._schemas import ChatCompletionRequest, CompletionRequest

CONVERSATION_HEADER = "x-conversation-id"
"""Request header that pins a conversation to one version (checked before ``user``)."""
VERSION_HEADER = "x-mlplat-version"
"""Response header naming the model version that answered."""
TTFT, ITL = "ttft", "itl"
"""Names of the extra SLO histograms: time to first token, inter-token latency (ms)."""


def request_key(body: Any, headers: Mapping[str, str]) -> tuple[str, str]:
    """The split key of a request and where it came from (``conversation``/``user``/``random``).

    A conversation id (header) or the OpenAI ``user`` field keeps every turn of that
    conversation or user on one version while the weights hold still; without either the
    request is split on a fresh random key.

    Example:
        >>> request_key({"user": "u7"}, {})
        ('user:u7', 'user')
        >>> request_key({"user": "u7"}, {"x-conversation-id": "c1"})
        ('conversation:c1', 'conversation')
    """
    conv = headers.get(CONVERSATION_HEADER)
    if conv:
        return f"conversation:{conv}", "conversation"
    user = body.get("user") if isinstance(body, dict) else None
    if isinstance(user, str) and user:
        return f"user:{user}", "user"
    return f"random:{uuid.uuid4().hex}", "random"


def text_similarity(a: str, b: str) -> float:
    """Word-level ``difflib.SequenceMatcher`` ratio in [0, 1] (1 = same words in the same order).

    Order-aware (unlike a Jaccard of word sets) and cheap for short completions.

    Example:
        >>> text_similarity("the canary measures", "the canary measures")
        1.0
        >>> round(text_similarity("the canary measures", "the canary waits"), 3)
        0.667
    """
    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


@dataclass(frozen=True)
class TextComparison:
    """One request answered live and mirrored to the shadow version."""

    live_version: str
    shadow_version: str
    exact_match: bool
    token_delta: int
    """Shadow completion tokens − live completion tokens."""
    similarity: float


def compare_texts(live_version: str, live_text: str, live_tokens: int, shadow_version: str,
                  shadow_text: str, shadow_tokens: int) -> TextComparison:
    """Exact match, token-length delta and word-level similarity of two completions.

    Example:
        >>> c = compare_texts("1", "a b c", 3, "2", "a b", 2)
        >>> c.exact_match, c.token_delta, round(c.similarity, 2)
        (False, -1, 0.8)
    """
    return TextComparison(live_version, shadow_version, live_text == shadow_text,
                          shadow_tokens - live_tokens, text_similarity(live_text, shadow_text))


class ShadowTextTotals:
    """Running comparison totals for one (live, shadow) version pair."""

    def __init__(self) -> None:
        self.comparisons = 0
        self.exact = 0
        self.sum_token_delta = 0
        self.sum_abs_token_delta = 0
        self.sum_similarity = 0.0

    def add(self, c: TextComparison) -> None:
        self.comparisons += 1
        self.exact += int(c.exact_match)
        self.sum_token_delta += c.token_delta
        self.sum_abs_token_delta += abs(c.token_delta)
        self.sum_similarity += c.similarity

    def sums(self) -> dict[str, float]:
        """The raw totals (what replicas push, so a fleet's comparisons add up exactly)."""
        return {"comparisons": self.comparisons, "exact": self.exact,
                "sum_similarity": self.sum_similarity}

    def as_dict(self) -> dict[str, Any]:
        n = self.comparisons
        return {"comparisons": n,
                "exact_match_rate": self.exact / n if n else None,
                "mean_token_delta": self.sum_token_delta / n if n else None,
                "mean_abs_token_delta": self.sum_abs_token_delta / n if n else None,
                "mean_similarity": self.sum_similarity / n if n else None,
                "similarity": "difflib word ratio"}


def observe_generation(counters: VersionCounters, stats: GenerationStats, status: str,
                       delay_s: float, total_ms: float) -> None:
    """Record one generation in a version's SLO counters.

    TTFT is what a client waits for the first token once the replica has the request: the
    injected delay (faults), the wait for a generation slot and the engine's first token.
    """
    counters.observe(total_ms, ok=status == "ok")
    if status != "ok":
        return
    if stats.ttft_s is not None:
        counters.observe_ms(TTFT, 1000 * (delay_s + stats.queue_s + stats.ttft_s))
    counters.observe_ms(ITL, *(1000 * g for g in stats.inter_token_s))


CoreFactory = Callable[[str], "LLMCore"]
"""``version -> LLMCore`` (loads the version's engine; called off the event loop)."""


class LLMRouter(SplitRouter):
    """The deployment plane's ``SplitRouter`` for OpenAI requests: split, stable fallback,
    fault injection and counters come from it; this adds the request key, streaming answers
    and the shadow comparison of text.

    Args:
        app_name: The app (for messages).
        rng: Randomness for fault injection.
        clock: Monotonic seconds (latency measurements).
        limits: Body size and JSON nesting limits (platform.yaml ``requests``).
    """

    label = "LLM router"

    def __init__(self, app_name: str, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 limits: RequestLimits | None = None) -> None:
        super().__init__(app_name, rng=rng)
        self._clock = clock
        self._limits = limits or RequestLimits()
        self.cores: dict[str, LLMCore] = {}
        self.keys: Counter[str] = Counter()
        self.shadow_slo: dict[str, VersionCounters] = {}
        self.shadow_totals: dict[tuple[str, str], ShadowTextTotals] = {}
        self.shadow_recent: deque[TextComparison] = deque(maxlen=100)
        self.shadow_in_flight = 0
        self._pending: dict[asyncio.Task[None], str] = {}  # shadow copy → its version

    # ------------------------------------------------------------------ configuration

    def plan(self, user_config: Mapping[str, Any] | RouterUserConfig
             ) -> tuple[RouterUserConfig, list[str]]:
        """Validate a ``user_config``; returns it and the versions still to load.

        Raises:
            UserError: invalid config (names the field).
        """
        new = self.validate(user_config)
        return new, sorted(split_versions(new.split) - set(self.cores), key=int)

    def commit(self, new: RouterUserConfig, loaded: Mapping[str, LLMCore]) -> None:
        """Swap in ``new`` with the freshly loaded cores; drop versions no longer named."""
        cores = {**self.cores, **loaded}
        wanted = split_versions(new.split)
        missing = wanted - set(cores)
        if missing:
            raise UserError(f"versions {sorted(missing)} of app '{self.app_name}' are not loaded")
        self.cores = {v: c for v, c in cores.items() if v in wanted}
        self.configure(new)
        # Shadow copies of a version the split no longer shadows are dropped: finishing after
        # the shadow stage, they would count as its evidence in the next stage (and dilute a
        # canary's live error rate there).
        for task, version in list(self._pending.items()):
            if version != new.split.shadow:
                task.cancel()

    # ------------------------------------------------------------------ requests

    async def handle(self, raw: bytes, schema: type[ChatCompletionRequest] | type[CompletionRequest],
                     headers: Mapping[str, str]
                     ) -> tuple[int, dict[str, Any] | None, AsyncIterator[str] | None, str]:
        """Route one OpenAI request; returns ``(status, body, sse_lines, version)``.

        A version whose injected fault fires is answered by the stable version instead
        (counted as an error of the faulty version), so a broken canary costs no failed request.
        """
        try:
            body = load_json_body(raw, self._limits)
        except RequestError:
            body = None  # the core answers the 4xx naming the field
        key, source = request_key(body, headers)
        self.keys[source] += 1
        version, stable = self.route(key), self.stable_version()
        # The cores this request may use, taken before any await: a split change landing
        # meanwhile drops versions it no longer names, not the request that picked one.
        core, stable_core = self.cores[version], self.cores[stable]
        fault = self.fault_for(version)
        failed: InjectedFault | None = None
        try:
            delay_s = self.inject(version)
        except InjectedFault as exc:
            delay_s, failed = (fault.delay_s if fault else 0.0), exc
        if delay_s:
            await asyncio.sleep(delay_s)
        if failed is not None:
            self.observe(version, 1000 * delay_s, ok=False)
            try:
                version = self.fall_back(version, failed)
            except InjectedFault as exc:  # the stable version itself: this request fails
                return 503, {"error": {"message": str(exc), "type": "server_error",
                                       "param": None, "code": None}}, None, version
            delay_s, core = 0.0, stable_core
        self.requests[version] += 1
        started = self._clock()
        counters = self.counters(version)
        generated: list[int] = []  # the stream's completion tokens, for the shadow comparison

        def observe(stats: GenerationStats, status: str) -> None:
            total = 1000 * (delay_s + self._clock() - started)
            observe_generation(counters, stats, status, delay_s, total)
            if status == "ok":
                generated.append(stats.completion_tokens)

        status, out, stream = await core.handle(raw, schema, observe)
        if out is not None and status == 200:
            out["system_fingerprint"] = f"{core.engine.model}-v{version}"
            text = _response_text(out)
            tokens = int((out.get("usage") or {}).get("completion_tokens", 0))
            self._mirror(raw, schema, version, text, tokens)
        if stream is not None and self._shadow_for(version) is not None:
            stream = self._tee(stream, raw, schema, version, generated)
        return status, out, stream, version

    async def _tee(self, stream: AsyncIterator[str], raw: bytes,
                   schema: type[ChatCompletionRequest] | type[CompletionRequest],
                   version: str, generated: list[int]) -> AsyncIterator[str]:
        """Pass SSE lines through; collect the text for the shadow comparison."""
        parts: list[str] = []
        async for line in stream:
            yield line
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                for choice in event.get("choices") or []:
                    delta = choice.get("delta")
                    parts.append((delta or {}).get("content", "") if delta is not None
                                 else choice.get("text", ""))
        # The core has counted the tokens (its observer ran before the last line); a stream
        # that failed mid-way is not compared.
        if generated:
            self._mirror(raw, schema, version, "".join(parts), generated[-1])

    # ------------------------------------------------------------------ shadow

    def _shadow_for(self, live_version: str) -> str | None:
        """The shadow version a request answered by ``live_version`` is copied to, if any
        (so a stream is only collected for comparison when something will compare it)."""
        shadow = self._config.split.shadow if self._config else None
        if not shadow or shadow == live_version or shadow not in self.cores:
            return None
        return shadow

    def _mirror(self, raw: bytes, schema: type[ChatCompletionRequest] | type[CompletionRequest],
                live_version: str, live_text: str, live_tokens: int) -> None:
        """Fire-and-forget a copy to the shadow version (bounded; a full queue drops it)."""
        shadow = self._shadow_for(live_version)
        if shadow is None or self._config is None:
            return
        if self.shadow_in_flight >= self._config.tuning.shadow_max_in_flight:
            self.shadow_dropped += 1
            return
        self.shadow_in_flight += 1
        task = asyncio.get_running_loop().create_task(
            self._shadow(raw, schema, live_version, live_text, live_tokens, shadow))
        self._pending[task] = shadow
        task.add_done_callback(self._shadow_done)

    def _shadow_done(self, task: asyncio.Task[None]) -> None:
        """Accounting of a finished copy; here, not in the coroutine, because a copy cancelled
        before it ever ran never enters its body."""
        self._pending.pop(task, None)
        self.shadow_in_flight -= 1
        if task.cancelled():  # the split stopped shadowing this version
            self.shadow_dropped += 1

    async def _shadow(self, raw: bytes,
                      schema: type[ChatCompletionRequest] | type[CompletionRequest],
                      live_version: str, live_text: str, live_tokens: int, shadow: str) -> None:
        counters = self.shadow_slo.setdefault(shadow, VersionCounters())
        started = self._clock()
        delay_s = 0.0

        def observe(stats: GenerationStats, status: str) -> None:
            observe_generation(counters, stats, status, delay_s,
                               1000 * (self._clock() - started))

        try:
            core = self.cores[shadow]  # before the await (see handle)
            delay_s = self.inject(shadow, shadow=True)
            if delay_s:
                await asyncio.sleep(delay_s)
            status, out, _ = await core.handle(raw, schema, observe, force_stream=False)
            if status != 200 or out is None:
                self.shadow_failed += 1
                return
            tokens = int((out.get("usage") or {}).get("completion_tokens", 0))
            c = compare_texts(live_version, live_text, live_tokens, shadow,
                              _response_text(out), tokens)
            self.shadow_totals.setdefault((live_version, shadow), ShadowTextTotals()).add(c)
            self.shadow_recent.append(c)
        except InjectedFault:
            counters.observe(1000 * (self._clock() - started), ok=False)
            self.shadow_failed += 1
        except Exception:
            self.shadow_failed += 1

    async def drain(self) -> None:
        """Wait for pending shadow copies (tests; shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
            await asyncio.sleep(0)  # let done-callbacks run

    # ------------------------------------------------------------------ reports

    def promotion_snapshot(self) -> dict[str, Any]:
        """Live and shadow counters added per version: a promotion's evidence and SLO window
        (in its shadow stage the candidate answers only shadow copies)."""
        from mlplat.llm._promotion import combined_snapshot

        return combined_snapshot(self.slo_snapshot(),
                                 {v: c.snapshot() for v, c in self.shadow_slo.items()})

    def shadow_sums(self) -> dict[str, dict[str, float]]:
        """Raw shadow comparison totals per ``live->shadow`` pair (pushed to the guard)."""
        return {f"{a}->{b}": t.sums() for (a, b), t in self.shadow_totals.items()}

    def shadow_report(self) -> dict[str, Any]:
        """Shadow comparisons per (live → shadow) pair, per-version SLO windows and drops."""
        def summary(counters: dict[str, VersionCounters]) -> dict[str, Any]:
            return {v: WindowStats(c.requests, c.errors, p99_of(c.buckets),
                                   {k: p99_of(h) for k, h in c.extra.items()}).as_dict()
                    for v, c in counters.items()}

        return {
            "split": self._config.split.model_dump(mode="json") if self._config else None,
            "comparisons": {f"{a}->{b}": t.as_dict() for (a, b), t in self.shadow_totals.items()},
            "recent": [c.__dict__ for c in list(self.shadow_recent)[-10:]],
            "live": summary(self.slo),
            "shadow": summary(self.shadow_slo),
            "dropped": self.shadow_dropped, "failed": self.shadow_failed,
            "in_flight": self.shadow_in_flight,
        }

    def stats(self) -> dict[str, Any]:
        return {**self.routing_stats(), "requests_by_version": dict(self.requests),
                "keys": dict(self.keys), "shadow": self.shadow_report()}


def _response_text(body: Mapping[str, Any]) -> str:
    choices = body.get("choices") or [{}]
    first = choices[0]
    if "message" in first:
        return str((first.get("message") or {}).get("content") or "")
    return str(first.get("text") or "")
