"""Builds the tiny Llama the embedded engine serves — entirely offline, no hub downloads.

A byte-level BPE tokenizer is trained with ``tokenizers`` on a generated corpus of short
platform-themed sentences, then a Llama-architecture model with tiny dimensions is created with
random weights (``LlamaConfig`` + ``LlamaForCausalLM``) and, optionally, warmed up for a few
steps on the same corpus so greedy output is word-like rather than byte noise. Two builds with
different seeds are two distinguishable model versions.

Example:
    >>> result = build_tiny_llm(TinyModelSpec(), Path("/tmp/tiny"), seed=1)   # doctest: +SKIP
    >>> result.parameters
    114496
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlplat.llm._config import TinyModelSpec

SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
# A plain role-prefixed template: the tiny model learns nothing of chat, but the prompt format
# is the same one a real model's template would produce from the same messages.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)

_SUBJECTS = ["the router", "a replica", "the cluster", "the model", "a request", "the pool",
             "the canary", "the shadow", "a token", "the user", "the engine", "the job"]
_VERBS = ["serves", "routes", "scales", "answers", "streams", "measures", "drains", "loads",
          "checks", "sends", "trains", "rolls back"]
_OBJECTS = ["the traffic", "a version", "the tokens", "the latency", "a checkpoint", "the gpu",
            "the split", "the cost", "a prompt", "the metrics", "the queue", "an answer"]
_TAILS = ["quickly", "on the serving pool", "under the quota", "before the deadline",
          "with low latency", "for the team", "", "", ""]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS)]
    return " ".join(w for w in words if w) + "."


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic chat exchanges of a tiny grammar, rendered with ``CHAT_TEMPLATE``.

    Training on rendered exchanges (ending in ``</s>``) teaches the model to answer after
    ``assistant:`` and then stop, so served completions end with ``finish_reason: stop``.
    """
    rng = random.Random(seed)
    return [f"<s>user: {_sentence(rng)}\n<s>assistant: {_sentence(rng)}</s>" for _ in range(n)]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    parameters: int
    vocab_size: int
    final_loss: float | None
    weights_sha256: str
    seconds: float


def train_tokenizer(spec: TinyModelSpec, texts: list[str]) -> object:
    """A byte-level BPE tokenizer (``PreTrainedTokenizerFast``) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size, special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = spec.context_length
    return fast


def build_tiny_llm(spec: TinyModelSpec, out_dir: Path, *, seed: int = 0) -> BuildResult:
    """Build tokenizer + model into ``out_dir`` (replaced atomically if it exists).

    Args:
        spec: Dimensions and warm-up steps (app.yaml ``builder:``).
        out_dir: Target folder; written as a sibling first, then renamed into place.
        seed: Seeds weights and warm-up order: different seeds give different versions.

    Returns:
        Where it was written, the parameter count, the final warm-up loss and a weights hash.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    texts = corpus(spec.corpus_sentences, seed=0)  # same corpus for every version
    tok = train_tokenizer(spec, texts)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),  # type: ignore[arg-type]
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.context_length,
        bos_token_id=tok.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tok.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tok.pad_token_id,  # type: ignore[attr-defined]
        # Untied: with tied embeddings a random model just echoes the prompt's last token, so
        # two seeds would answer alike; an untied random head makes versions distinguishable.
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    loss = _warm_up(model, tok, texts, spec, seed) if spec.train_steps else None
    model.eval()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(str(staging))
        tok.save_pretrained(str(staging))  # type: ignore[attr-defined]
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    digest = hashlib.sha256()
    for f in sorted(out_dir.glob("*.safetensors")):
        digest.update(f.read_bytes())
    return BuildResult(
        path=out_dir, parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tok), final_loss=loss,  # type: ignore[arg-type]
        weights_sha256=digest.hexdigest(), seconds=time.perf_counter() - t0,
    )


def _warm_up(model: object, tok: object, texts: list[str], spec: TinyModelSpec,
             seed: int) -> float:
    """A few AdamW steps of next-token prediction on the corpus; returns the last loss."""
    import torch

    rng = random.Random(seed)
    stream: list[int] = []
    for text in texts:
        stream += tok(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    seq = min(64, spec.context_length)
    starts = list(range(0, max(1, len(stream) - seq), seq))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)  # type: ignore[attr-defined]
    model.train()  # type: ignore[attr-defined]
    loss_value = float("nan")
    for _ in range(spec.train_steps):
        batch = [stream[s:s + seq] for s in rng.sample(starts, min(16, len(starts)))]
        ids = torch.tensor(batch)
        out = model(input_ids=ids, labels=ids)  # type: ignore[operator]
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        loss_value = out.loss.item()
    return loss_value
