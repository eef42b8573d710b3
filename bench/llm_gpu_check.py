"""Device check: the transformers engine on a GPU, against the same weights on CPU.

What a version replica with ``serving.version_num_gpus: 1`` does (``transformers.device:
auto`` → CUDA): load the weights on the GPU and generate there. Runs without Ray (the GPU
machines lent to sessions have no Ray), so it loads the engine modules directly.

It builds one model (random weights, offline BPE tokenizer), loads it on each device, and
prints: greedy answers equal across devices (out of N prompts), TTFT and tokens/s of serial
requests, and tokens/s of concurrent ones. Not part of `make bench` (it needs a GPU to say
anything new); on a CPU-only machine it measures the CPU alone.

Example: `PYTHONPATH=platform python bench/llm_gpu_check.py --out /tmp/llm_gpu.json`
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = {"vocab_size": 512, "hidden_size": 512, "intermediate_size": 1408, "num_layers": 8,
        "num_heads": 8, "num_kv_heads": 4, "context_length": 512, "train_steps": 0,
        "corpus_sentences": 400}
LARGE = {**SPEC, "hidden_size": 2048, "intermediate_size": 5632, "num_layers": 16,
         "num_heads": 16, "num_kv_heads": 8}
"""≈ 0.8 B parameters: where a GPU starts to pay off for one unbatched generation."""
PROMPTS = [f"the {w} of the platform" for w in
           ("router", "canary", "shadow", "quota", "drift", "registry", "ledger", "replica")]


def _engine_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """``mlplat.llm``'s engine modules without the package ``__init__`` (which needs Ray)."""
    platform = REPO / "platform"
    if str(platform) not in sys.path:
        sys.path.insert(0, str(platform))
    if "mlplat.llm" not in sys.modules:
        pkg = types.ModuleType("mlplat.llm")
        pkg.__path__ = [str(platform / "mlplat" / "llm")]
        sys.modules["mlplat.llm"] = pkg
    import mlplat.llm._builder as builder
    import mlplat.llm._config as config
    import mlplat.llm._transformers as tf

    return builder, config, tf


async def _one(engine, tf, prompt: str, max_tokens: int):  # type: ignore[no-untyped-def]
    from mlplat.llm._engine import GenerationStats, SamplingParams

    stats = GenerationStats()
    parts = [d.text async for d in engine.stream(prompt, SamplingParams(max_tokens=max_tokens,
                                                                        temperature=0), stats)]
    return "".join(parts), stats


async def _measure(engine, tf, max_tokens: int, concurrent: int) -> dict:  # type: ignore[no-untyped-def]
    await _one(engine, tf, "warm up", 4)
    answers, ttft, tps = [], [], []
    for p in PROMPTS:
        text, stats = await _one(engine, tf, p, max_tokens)
        answers.append(text)
        ttft.append(1000 * (stats.ttft_s or 0.0))
        tps.append(stats.tokens_per_s)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(_one(engine, tf, PROMPTS[i % len(PROMPTS)], max_tokens)
                                     for i in range(concurrent)))
    wall = time.perf_counter() - t0
    tokens = sum(s.completion_tokens for _, s in results)
    return {"answers": answers, "ttft_ms_median": round(statistics.median(ttft), 2),
            "tokens_per_s_serial_median": round(statistics.median(tps), 1),
            f"tokens_per_s_{concurrent}_concurrent": round(tokens / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--large", action="store_true", help="the ≈0.8 B-parameter model")
    args = parser.parse_args()
    import torch

    builder, config, tf = _engine_modules()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    spec = LARGE if args.large else SPEC
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)
                    if torch.cuda.is_available() else None, "spec": spec,
                    "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        built = builder.build_tiny_llm(config.TinyModelSpec.model_validate(spec),
                                       Path(tmp) / "m", seed=0)
        report["build_s"] = round(time.perf_counter() - t0, 1)
        for device in devices:
            opts = config.TransformersEngineConfig.model_validate({
                "max_tokens_limit": 256, "default_max_tokens": 32, "torch_threads": 8,
                "max_concurrent_generations": args.concurrent, "device": device})
            t0 = time.perf_counter()
            engine = tf.TransformersEngine.load(built.path, model="m", version="1", options=opts)
            report[device] = {"device": engine.device,
                              "load_s": round(time.perf_counter() - t0, 2),
                              **asyncio.run(_measure(engine, tf, args.max_tokens,
                                                     args.concurrent))}
    if "cuda" in report:
        pairs = zip(report["cpu"]["answers"], report["cuda"]["answers"], strict=True)
        same = sum(a == b for a, b in pairs)
        report["greedy_answers_equal"] = f"{same}/{len(PROMPTS)}"
        for key in ("tokens_per_s_serial_median", f"tokens_per_s_{args.concurrent}_concurrent"):
            report[f"{key}_cuda_over_cpu"] = round(report["cuda"][key] / report["cpu"][key], 2)
    for device in devices:
        report[device]["answers"] = report[device]["answers"][:2]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
