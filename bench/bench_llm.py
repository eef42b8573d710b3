"""LLM engine: streaming overhead and time to first token, against plain ``model.generate``.

Baseline, measured in the same run on the same tiny Llama (apps/llm's builder spec, random
weights, greedy): one ``model.generate(max_new_tokens=N)`` call with no streamer — the fastest
way transformers can produce the tokens. Measured: the same generation through
``TransformersEngine.stream`` (worker thread, per-token hand-off to the event loop, incremental
detokenization, stop-string filter). Reported: tokens/s of both and their ratio (≈ 1 means
streaming costs nothing), TTFT as a share of the whole generation (what streaming buys a
client), and cost per 1k tokens at the measured rate from platform.yaml's serving-pool price.

Example: `.venv/bin/python bench/bench_llm.py` (MLPLAT_BENCH_LLM_N=20 requests by default).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_TOKENS = 48


def main() -> None:
    import torch

    from mlplat.config import load_config
    from mlplat.llm import (
        GenerationStats,
        SamplingParams,
        TinyModelSpec,
        build_tiny_llm,
        cost_per_1k_tokens,
        load_llm_app,
    )
    from mlplat.llm._transformers import TransformersEngine

    n = int(os.environ.get("MLPLAT_BENCH_LLM_N", "20"))
    cfg = load_config(REPO / "platform.yaml")
    app = load_llm_app("llm", cfg)
    with tempfile.TemporaryDirectory() as tmp:
        spec = TinyModelSpec.model_validate({**app.builder.model_dump(), "train_steps": 0})
        folder = build_tiny_llm(spec, Path(tmp) / "m", seed=0).path
        engine = TransformersEngine.load(folder, model="tiny-chat", version="1",
                                         options=app.transformers)
        lm, tok = engine._lm, engine._tok
        from mlplat.llm._schemas import ChatMessage

        prompt = engine.render_chat([ChatMessage(role="user", content="the router serves")])
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]

        def baseline() -> tuple[int, float]:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=MAX_TOKENS, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id)
            return int(out.shape[1] - ids.shape[1]), time.perf_counter() - t0

        async def streamed() -> GenerationStats:
            stats = GenerationStats()
            params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
            async for _ in engine.stream(prompt, params, stats):
                pass
            return stats

        baseline()
        asyncio.run(streamed())  # warm-up both paths
        base_tps, eng_tps, ttft_share = [], [], []
        for _ in range(n):
            tokens, secs = baseline()
            base_tps.append(tokens / secs)
            s = asyncio.run(streamed())
            eng_tps.append(s.tokens_per_s)
            ttft_share.append((s.ttft_s or 0) / s.generate_s)
    b, e = statistics.median(base_tps), statistics.median(eng_tps)
    print(f"tiny Llama {spec.hidden_size}d×{spec.num_layers}L, {MAX_TOKENS} greedy tokens, "
          f"n={n}, torch threads {torch.get_num_threads()}")
    print(f"baseline model.generate:  {b:8.1f} tokens/s (median)")
    print(f"engine stream:            {e:8.1f} tokens/s (median)  → ratio {e / b:.2f}× baseline")
    print(f"TTFT / whole generation:  {statistics.median(ttft_share):.2f} (median; streaming "
          "shows the first token after this share of the time)")
    print(f"cost per 1k tokens at {e:.0f} tokens/s on {app.serving.pool} "
          f"({app.serving.num_cpus_per_replica} CPU/replica): "
          f"${cost_per_1k_tokens(cfg, app, e):.7f}")


if __name__ == "__main__":
    main()
