"""The transformers engine for real on a tiny local Llama: generation, streaming, limits, the
OpenAI shapes of LLMCore, and two versions held side by side (what a router needs)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mlplat.llm import ChatCompletionRequest, CompletionRequest

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "the router serves"}]}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _gen(engine, prompt, params):
    from mlplat.llm import GenerationStats

    stats = GenerationStats()
    deltas = [d async for d in engine.stream(prompt, params, stats)]
    return deltas, stats


@pytest.fixture()
def engine(platform_config, llm_app):
    from mlplat.llm import load_engine

    return load_engine(platform_config, llm_app)


def test_greedy_generation_is_deterministic_and_counts_tokens(engine) -> None:
    from mlplat.llm import SamplingParams

    params = SamplingParams(max_tokens=12, temperature=0)
    a, sa = _run(_gen(engine, "the router", params))
    b, _ = _run(_gen(engine, "the router", params))
    assert "".join(d.text for d in a) == "".join(d.text for d in b)
    assert a[-1].finish_reason in {"stop", "length"}
    assert sum(d.tokens for d in a) == sa.completion_tokens
    assert 1 <= sa.completion_tokens <= 12
    if a[-1].finish_reason == "length":
        assert sa.completion_tokens == 12
    assert sa.prompt_tokens == engine.count_tokens("the router") > 0
    assert sa.ttft_s is not None and 0 < sa.ttft_s <= sa.generate_s
    assert len(sa.token_times_s) == sa.completion_tokens
    assert sa.tokens_per_s > 0


def test_seeded_sampling_repeats_and_stop_strings_cut(engine) -> None:
    from mlplat.llm import SamplingParams

    seeded = SamplingParams(max_tokens=10, temperature=1.0, seed=7)
    a, _ = _run(_gen(engine, "a request", seeded))
    b, _ = _run(_gen(engine, "a request", seeded))
    assert [d.text for d in a] == [d.text for d in b]
    full = "".join(d.text for d in _run(_gen(engine, "the pool",
                                               SamplingParams(max_tokens=20, temperature=0)))[0])
    if len(full) >= 4:  # stop on a piece of the greedy continuation itself
        stop = full[2:4]
        cut, _ = _run(_gen(engine, "the pool",
                           SamplingParams(max_tokens=20, temperature=0, stop=(stop,))))
        assert "".join(d.text for d in cut) == full[: full.find(stop)]
        assert cut[-1].finish_reason == "stop"


def test_prompt_and_max_tokens_must_fit_the_context(engine) -> None:
    from mlplat.llm import LLMRequestError, SamplingParams

    ctx = engine.context_length
    with pytest.raises(LLMRequestError, match=rf"max_tokens: {ctx} plus the .* context of {ctx}"):
        _run(_gen(engine, "hi", SamplingParams(max_tokens=ctx)))
    with pytest.raises(LLMRequestError, match=r"prompt: the prompt is \d+ tokens") as info:
        _run(_gen(engine, "the router serves " * ctx, SamplingParams(max_tokens=1)))
    assert info.value.field == "prompt"


def test_core_answers_openai_shapes_and_rejects_bad_requests(platform_config, llm_app,
                                                             engine) -> None:
    from mlplat.llm import LLMCore

    core = LLMCore(platform_config, llm_app, engine)
    status, body, stream = _run(core.handle(json.dumps({**CHAT, "max_tokens": 6,
                                                        "temperature": 0}),
                                            ChatCompletionRequest))
    assert status == 200 and stream is None
    assert body["object"] == "chat.completion" and body["model"] == "tiny-chat"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # Defaults from app.yaml: max_tokens omitted → transformers.default_max_tokens.
    status, body, _ = _run(core.handle(b'{"model": "tiny-chat", "prompt": "the job",'
                                       b' "temperature": 0}', CompletionRequest))
    assert status == 200 and body["object"] == "text_completion"
    assert body["usage"]["completion_tokens"] <= llm_app.transformers.default_max_tokens

    for raw, code, field in [
        ({**CHAT, "model": "tiny-chatt"}, 404, "model"),
        ({**CHAT, "max_tokens": llm_app.transformers.max_tokens_limit + 1}, 400, "max_tokens"),
        ({**CHAT, "messages": [{"role": "user", "content": 3}]}, 400, "messages.0.content"),
    ]:
        status, body, _ = _run(core.handle(json.dumps(raw), ChatCompletionRequest))
        assert (status, body["field"]) == (code, field), body
    assert "Did you mean 'tiny-chat'" in _run(core.handle(
        json.dumps({**CHAT, "model": "tiny-chatt"}), ChatCompletionRequest))[1]["error"]["message"]
    stats = core.stats()
    assert stats["requests"] == 2 and stats["errors"] == 0
    assert stats["completion_tokens"] >= 2 and stats["cost_usd_per_1k_tokens"] > 0


def test_streaming_equals_non_streaming(platform_config, llm_app, engine) -> None:
    from mlplat.llm import LLMCore

    core = LLMCore(platform_config, llm_app, engine)
    body = {**CHAT, "max_tokens": 8, "temperature": 0}
    _, whole, _ = _run(core.handle(json.dumps(body), ChatCompletionRequest))

    async def lines() -> list[str]:
        status, _, stream = await core.handle(
            json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}),
            ChatCompletionRequest)
        assert status == 200 and stream is not None
        return [line async for line in stream]

    events = _run(lines())
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finals[-1] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_two_versions_side_by_side(platform_config, llm_app, tiny_models) -> None:
    """A router can hold v1 and v2 in-process; the versions are different models."""
    from mlplat.llm import AppEngineLoader, EngineSet, SamplingParams

    engines = EngineSet(AppEngineLoader(platform_config, llm_app), "tiny-chat")
    v1, v2 = engines.get("1"), engines.get("2")
    assert (v1.version, v2.version) == ("1", "2") and engines.get("1") is v1
    assert engines.loaded_versions == ["1", "2"]
    p = SamplingParams(max_tokens=12, temperature=0)
    t1 = "".join(d.text for d in _run(_gen(v1, "the canary", p))[0])
    t2 = "".join(d.text for d in _run(_gen(v2, "the canary", p))[0])
    assert t1 != t2
    engines.retain(["2"])
    assert engines.loaded_versions == ["2"]


def test_missing_model_folder_says_how_to_build_it(platform_config, tmp_path) -> None:
    from mlplat.errors import UserError
    from mlplat.llm import load_engine, parse_llm_app
    from tests.unit.llm.conftest import app_raw

    app = parse_llm_app(app_raw(model={"name": "tiny-chat", "source": {
        "type": "local", "path": str(tmp_path / "nothing")}}), platform_config)
    with pytest.raises(UserError, match=r"has no \['config.json', 'tokenizer.json'\]. "
                                        r"Build the model first: python jobs/build_tiny_llm.py"):
        load_engine(platform_config, app)


def test_sampling_parameters_at_the_edge_of_their_ranges_answer_200(platform_config, llm_app,
                                                                     engine) -> None:
    """Issue 19: ``temperature: 1e-40`` (inside 0..2) was a 500 from the sampler and a seed
    past int64 a 500 from torch; now greedy, and a 400 naming ``seed``."""
    from mlplat.llm import LLMCore

    core = LLMCore(platform_config, llm_app, engine)
    status, body, _ = _run(core.handle(json.dumps({**CHAT, "max_tokens": 4,
                                                   "temperature": 1e-40, "seed": 2**63 - 1}),
                                       ChatCompletionRequest))
    assert status == 200, body
    status, body, _ = _run(core.handle(json.dumps({**CHAT, "seed": 2**63}),
                                       ChatCompletionRequest))
    assert status == 400 and body["field"] == "seed", body
