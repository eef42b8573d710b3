"""The embedded CPU engine: a causal LM run with transformers + torch inside the replica.

Generation runs in a worker thread (torch releases the GIL) and hands token ids to the event
loop as they are produced, so the first token reaches the client while the rest are computed.
At most ``max_concurrent_generations`` run at once per replica; the wait is the queue time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from mlplat.errors import UserError
from mlplat.llm._config import TransformersEngineConfig
from mlplat.llm._engine import (
    Delta,
    GenerationStats,
    SamplingParams,
    StopFilter,
    check_budget,
)
from mlplat.llm._schemas import ChatMessage, FinishReason

REQUIRED_FILES = ("config.json", "tokenizer.json")
_CONTEXT_TOKENS = 4


def render_chat(tokenizer: Any, messages: Sequence[ChatMessage]) -> str:
    """The prompt text of a chat: the tokenizer's chat template, ready for the answer."""
    return str(tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=False
    ))


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as the model sees it (no special tokens added)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenizer_from_files(files: dict[str, bytes]) -> Any:
    """A tokenizer rebuilt from ``TransformersEngine.tokenizer_files`` (no weights, no hub)."""
    import tempfile

    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / Path(name).name).write_bytes(data)
        return PreTrainedTokenizerFast.from_pretrained(tmp, local_files_only=True)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU (Ray exposes only the replica's own), else
    ``cpu``; ``cuda`` without a visible GPU is an error naming the setting.

    Raises:
        UserError: ``device: cuda`` but torch sees no GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "transformers.device: 'cuda' but this process sees no GPU. Give the version "
            "replicas GPUs (serving.placement: deployments, serving.version_num_gpus: 1) or "
            "use device: auto."
        )
    return device


class TransformersEngine:
    """``LLMEngine`` over a local folder saved by ``save_pretrained`` (weights + tokenizer).

    Example:
        >>> eng = TransformersEngine.load(folder, model="tiny-chat", version="1")  # doctest: +SKIP
        >>> eng.context_length
        256
    """

    engine_type = "transformers"

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str, version: str,
                 options: TransformersEngineConfig) -> None:
        self._lm = model
        self._tok = tokenizer
        self._model_name = model_name
        self._version = version
        self._options = options
        self._slots: asyncio.Semaphore | None = None
        self._seed_lock = threading.Lock()
        self._eos = tokenizer.eos_token_id

    @classmethod
    def load(cls, folder: Path, *, model: str, version: str,
             options: TransformersEngineConfig | None = None) -> TransformersEngine:
        """Load weights and tokenizer from ``folder`` (never from a hub).

        Raises:
            UserError: the folder is missing or lacks config.json / tokenizer.json.
        """
        folder = Path(folder)
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise UserError(
                f"model.source: {folder} has no {missing}. Build the model first: "
                "python jobs/build_tiny_llm.py --app llm (or point model.source at a folder "
                "saved with save_pretrained)."
            )
        import torch
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        opts = options or TransformersEngineConfig.model_validate({})
        torch.set_num_threads(opts.torch_threads)
        tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        lm.to(resolve_device(opts.device))  # type: ignore[arg-type]  # transformers' stub
        lm.eval()
        return cls(lm, tok, model_name=model, version=version, options=opts)

    # ------------------------------------------------------------------ LLMEngine

    @property
    def model(self) -> str:
        return self._model_name

    @property
    def version(self) -> str:
        return self._version

    @property
    def context_length(self) -> int:
        return int(self._lm.config.max_position_embeddings)

    @property
    def options(self) -> TransformersEngineConfig:
        return self._options

    @property
    def device(self) -> str:
        """Where the weights are (``cpu``, ``cuda:0``)."""
        return str(self._lm.device)

    def tokenizer_files(self) -> dict[str, bytes]:
        """The tokenizer as the files ``save_pretrained`` writes: what a router in another
        process needs to render chats and count tokens for this version without its weights."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self._tok.save_pretrained(tmp)
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat(self._tok, messages)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self._tok, text)

    async def stream(self, prompt: str, params: SamplingParams,
                     stats: GenerationStats, *, prompt_field: str = "prompt"
                     ) -> AsyncIterator[Delta]:
        """Generate; see ``LLMEngine``. Validation errors are raised before the first yield."""
        ids = self._tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        stats.prompt_tokens = int(ids.shape[1])
        check_budget(stats.prompt_tokens, params, self.context_length, prompt_field)
        if self._slots is None:  # created lazily: it must belong to the serving event loop
            self._slots = asyncio.Semaphore(self._options.max_concurrent_generations)
        arrived = time.perf_counter()
        async with self._slots:
            started = time.perf_counter()
            stats.queue_s = started - arrived
            async for delta in self._generate(ids, params, stats, started):
                yield delta
            stats.generate_s = time.perf_counter() - started

    # ------------------------------------------------------------------ internals

    async def _generate(self, ids: Any, params: SamplingParams, stats: GenerationStats,
                        started: float) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[int] | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()
        worker = loop.run_in_executor(None, self._run, ids, params, loop, queue, cancel)
        stops = StopFilter(params.stop)
        # Incremental detokenization: decode only the new tokens after a few already-emitted
        # ones (for context such as a leading space), not the whole completion every token.
        context: list[int] = []
        unsent: list[int] = []
        pending = 0  # tokens whose text is not out yet (half a character, a possible stop)
        finish: FinishReason = "length"
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                now = time.perf_counter()
                if stats.ttft_s is None:
                    stats.ttft_s = now - started
                stats.token_times_s.append(now - started)
                stats.completion_tokens += len(item)
                pending += len(item)
                new = [t for t in item if t != self._eos]
                if len(new) < len(item):
                    finish = "stop"
                unsent += new
                text = self._new_text(context, unsent)
                if text.endswith("\ufffd") and finish != "stop":
                    continue  # half a UTF-8 character: wait for the rest
                context, unsent = (context + unsent)[-_CONTEXT_TOKENS:], []
                piece, stopped = stops.feed(text)
                if stopped:
                    cancel.set()
                    yield Delta(piece, pending, "stop")
                    return
                if finish == "stop":  # end of sequence: what is left, held-back text included
                    yield Delta(piece + stops.flush(), pending, "stop")
                    return
                if piece:
                    yield Delta(piece, pending)
                    pending = 0
            # Text still held back (e.g. an incomplete character at the token limit).
            piece, stopped = stops.feed(self._new_text(context, unsent))
            if not stopped:
                piece += stops.flush()
            yield Delta(piece, pending, "stop" if stops.stopped else finish)
        finally:
            cancel.set()  # a client that went away must not keep the CPU busy
            await worker

    def _new_text(self, context: list[int], new: list[int]) -> str:
        """Text that ``new`` adds after ``context`` (decoded together, so spaces survive)."""
        if not new:
            return ""
        before = self._tok.decode(context, skip_special_tokens=True)
        after = self._tok.decode(context + new, skip_special_tokens=True)
        return str(after[len(before):])

    def _run(self, ids: Any, params: SamplingParams, loop: asyncio.AbstractEventLoop,
             queue: asyncio.Queue[list[int] | BaseException | None],
             cancel: threading.Event) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        def push(item: list[int] | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        class _Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first hands over the prompt itself
                    self.prompt_seen = True
                    return
                push([int(t) for t in value.reshape(-1).tolist()])

            def end(self) -> None:
                pass

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)  # on the GPU with the ids

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
             "top_k": 0}
            if params.temperature > 0 else {"do_sample": False}
        )
        try:
            with torch.inference_mode():
                if params.seed is not None:
                    with self._seed_lock:
                        torch.manual_seed(params.seed)
                ids = ids.to(self._lm.device)
                self._lm.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=params.max_tokens,
                    streamer=_Streamer(),
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                    pad_token_id=self._tok.pad_token_id,
                    eos_token_id=self._eos,
                    **sampling,
                )
        except BaseException as exc:  # surfaces in the request, not as a silent hang
            push(exc)
        finally:
            push(None)
