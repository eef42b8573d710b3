"""The engine interface every LLM backend serves through, and engine-agnostic helpers.

An engine turns one prompt into a stream of text deltas. The Serve app (and, next, the
deployment plane's router) only ever talks to this interface, so two model versions can sit
side by side in one replica (``EngineSet``) or behind two deployments.

Example:
    >>> engine = load_engine(cfg, app)                      # doctest: +SKIP
    >>> stats = GenerationStats()
    >>> async for delta in engine.stream("Hello", SamplingParams(max_tokens=8), stats):
    ...     print(delta.text, end="")                         # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mlplat.llm._schemas import ChatMessage, FinishReason, LLMRequestError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig


SAMPLING_EPS = 1e-5
"""A temperature below this is greedy, as vLLM does: dividing logits by 1e-40 overflows them
to inf, and sampling from that fails (a valid request answered 500)."""


@dataclass(frozen=True)
class SamplingParams:
    """What to generate. ``temperature == 0`` means greedy (deterministic); so does any
    temperature below ``SAMPLING_EPS``."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < SAMPLING_EPS:
            object.__setattr__(self, "temperature", 0.0)


@dataclass
class Delta:
    """New text and how many completion tokens produced it; the last one has a finish reason."""

    text: str
    tokens: int
    finish_reason: FinishReason | None = None


@dataclass
class GenerationStats:
    """Timings of one generation, filled in by the engine as it runs (seconds)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_s: float = 0.0
    ttft_s: float | None = None
    generate_s: float = 0.0
    token_times_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of generation (0 when nothing was generated)."""
        return self.completion_tokens / self.generate_s if self.generate_s > 0 else 0.0

    @property
    def inter_token_s(self) -> list[float]:
        """Gaps between consecutive token arrivals."""
        t = self.token_times_s
        return [b - a for a, b in itertools.pairwise(t)]


@runtime_checkable
class LLMEngine(Protocol):
    """One loaded model version that can generate.

    ``stream`` must validate before generating (raising ``LLMRequestError`` naming the field),
    fill ``stats`` as it goes, and end with a ``Delta`` carrying ``finish_reason``.
    """

    @property
    def engine_type(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text for a chat (the model's chat template)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, prompt: str, params: SamplingParams, stats: GenerationStats, *,
               prompt_field: str = "prompt") -> AsyncIterator[Delta]:
        """Deltas of the completion; ``prompt_field`` names the field a too-long prompt blames."""
        ...


LLMEngineLoader = Callable[[str, str], LLMEngine]
"""``(model, version) -> LLMEngine``; picklable, so it can travel to every replica."""


def check_budget(prompt_tokens: int, params: SamplingParams, context_length: int,
                 prompt_field: str) -> None:
    """Reject a request whose prompt plus ``max_tokens`` cannot fit the context window.

    Raises:
        LLMRequestError: naming ``prompt_field`` or ``max_tokens``.
    """
    if prompt_tokens >= context_length:
        raise LLMRequestError(
            f"{prompt_field}: the prompt is {prompt_tokens} tokens; the model's context is "
            f"{context_length}. Shorten it.", prompt_field,
        )
    room = context_length - prompt_tokens
    if params.max_tokens > room:
        raise LLMRequestError(
            f"max_tokens: {params.max_tokens} plus the {prompt_tokens}-token prompt exceeds the "
            f"model's context of {context_length}; ask for at most {room}.", "max_tokens",
        )


class StopFilter:
    """Cuts streamed text at the first stop string, holding back text that may start one.

    Example:
        >>> f = StopFilter(["\\n\\n"])
        >>> f.feed("a\\n"), f.feed("\\nb")
        (('a', False), ('', True))
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit now, whether a stop string was reached)."""
        if self.stopped:
            return "", True
        buf = self._pending + text
        at, full = self._earliest(buf, final=False)
        self._pending = "" if full else buf[at:]
        self.stopped = full
        return buf[:at], full

    def flush(self) -> str:
        """Text held back when the stream ends, up to a stop string it turns out to hold
        (``stopped`` then becomes True)."""
        if self.stopped:
            return ""
        buf, self._pending = self._pending, ""
        at, self.stopped = self._earliest(buf, final=True)
        return buf[:at]

    def _earliest(self, buf: str, *, final: bool) -> tuple[int, bool]:
        """Where the earliest stop string starts in ``buf`` and whether it is complete.

        While more text may come (not ``final``), a tail of ``buf`` that is the start of a
        stop string counts too: a longer stop starting there would come before any later one.
        """
        for at in range(len(buf)):
            rest = buf[at:]
            if any(rest.startswith(s) for s in self._stops):
                return at, True
            if not final and any(s.startswith(rest) for s in self._stops):
                return at, False
        return len(buf), False


class EngineSet:
    """Loaded versions of one model, by version: what a router holds in-process.

    Loading is lazy and once per version; ``retain`` drops versions no longer named.

    Example:
        >>> engines = EngineSet(loader, "tiny-chat")          # doctest: +SKIP
        >>> engines.get("2").version
        '2'
    """

    def __init__(self, loader: LLMEngineLoader, model: str) -> None:
        self._loader = loader
        self.model = model
        self._engines: dict[str, LLMEngine] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> LLMEngine:
        with self._lock:
            if version not in self._engines:
                self._engines[version] = self._loader(self.model, version)
            return self._engines[version]

    def retain(self, versions: Sequence[str]) -> None:
        with self._lock:
            for v in list(self._engines):
                if v not in versions:
                    del self._engines[v]

    @property
    def loaded_versions(self) -> list[str]:
        return sorted(self._engines, key=int)


class AppEngineLoader:
    """The default ``LLMEngineLoader``: the app's engine and model source, built in the replica.

    Example:
        >>> AppEngineLoader(cfg, app)("tiny-chat", "1").engine_type   # doctest: +SKIP
        'transformers'
    """

    def __init__(self, cfg: PlatformConfig, app: LLMAppConfig) -> None:
        self.cfg = cfg
        self.app = app

    def __repr__(self) -> str:
        return f"AppEngineLoader({self.app.name!r})"

    def __call__(self, model: str, version: str) -> LLMEngine:
        return load_engine(self.cfg, self.app, version)


def load_engine(cfg: PlatformConfig, app: LLMAppConfig, version: str | None = None) -> LLMEngine:
    """Load the app's model ``version`` (default: the app's) with its in-process engine.

    Raises:
        UserError: the app's engine is ``vllm``, which runs as Ray Serve LLM deployments
            (``build_vllm_app``), not in-process; or the model folder is missing.
        NotFoundError: a registry source names an unknown version.
    """
    from mlplat.errors import UserError
    from mlplat.llm._registry import model_folder

    if app.engine == "vllm":
        raise UserError(
            "engine: 'vllm' is not an in-process engine; it runs as Ray Serve LLM deployments "
            "(mlplat.llm.build_vllm_app). Use `engine: transformers` for the embedded engine."
        )
    from mlplat.llm._transformers import TransformersEngine

    version = version or app.model.version
    folder = model_folder(cfg, app, version)
    return TransformersEngine.load(folder, model=app.model.name, version=version,
                                   options=app.transformers)
