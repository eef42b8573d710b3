"""``serving.placement: deployments`` without Ray: the router's ``RemoteEngine`` against the
version replica's real ``LLMVersionServer`` class (a tiny local Llama), through a fake handle
that behaves like a Serve handle (``.remote()`` → result / async stream, ``cancel``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlplat.errors import UserError
from tests.unit.llm.conftest import app_raw

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "the router serves"}],
        "max_tokens": 10, "temperature": 0}


class _Response:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout_s: float | None = None) -> Any:
        return asyncio.run(self._value) if asyncio.iscoroutine(self._value) else self._value


class _Stream:
    """What ``handle.options(stream=True).generate.remote(...)`` returns."""

    def __init__(self, agen: Any) -> None:
        self._agen = agen
        self.cancelled = False
        self.items = 0

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Any:
        item = await self._agen.__anext__()
        self.items += 1
        return item

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, fn: Any, log: list[Any]) -> None:
        self._fn, self._log = fn, log

    def remote(self, *args: Any) -> Any:
        out = self._fn(*args)
        if hasattr(out, "__anext__"):
            stream = _Stream(out)
            self._log.append(stream)
            return stream
        return _Response(out)


class FakeHandle:
    """A Serve handle to one in-process ``LLMVersionServer``."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.streams: list[_Stream] = []

    def options(self, **_: Any) -> FakeHandle:
        return self

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._server, name), self.streams)


@pytest.fixture()
def version_server(platform_config, llm_app):
    from mlplat.llm._remote import LLMVersionServer

    return LLMVersionServer.func_or_class(platform_config, llm_app, None, "1")


def _core(platform_config, llm_app, engine):
    from mlplat.llm import LLMCore

    return LLMCore(platform_config, llm_app, engine)


def test_remote_engine_answers_what_the_in_process_engine_answers(
        platform_config, llm_app, version_server) -> None:
    import json

    from mlplat.llm import ChatCompletionRequest, load_engine
    from mlplat.llm._remote import RemoteEngine

    handle = FakeHandle(version_server)
    remote = RemoteEngine(handle)
    local = load_engine(platform_config, llm_app)
    assert (remote.model, remote.version, remote.engine_type) == ("tiny-chat", "1",
                                                                  "transformers")
    assert remote.context_length == local.context_length
    # The router renders chats and counts tokens with the version's own tokenizer.
    from mlplat.llm._schemas import ChatMessage

    msgs = [ChatMessage(role="user", content="the canary measures")]
    assert remote.render_chat(msgs) == local.render_chat(msgs)
    assert remote.count_tokens("the canary measures") == local.count_tokens("the canary measures")

    raw = json.dumps(CHAT).encode()
    seen: list[Any] = []
    status, body, _ = asyncio.run(_core(platform_config, llm_app, remote).handle(
        raw, ChatCompletionRequest, lambda stats, s: seen.append((stats, s))))
    _, expected, _ = asyncio.run(_core(platform_config, llm_app, local).handle(
        raw, ChatCompletionRequest))
    assert status == 200 and body is not None and expected is not None
    assert body["choices"][0]["message"] == expected["choices"][0]["message"]
    assert body["usage"] == expected["usage"]
    stats, outcome = seen[0]
    assert outcome == "ok" and stats.ttft_s is not None and stats.completion_tokens >= 1
    assert len(stats.token_times_s) >= 1 and stats.generate_s >= stats.ttft_s
    assert not handle.streams[0].cancelled  # read to its end: nothing to cancel


def test_a_request_over_budget_is_a_4xx_before_the_version_is_called(
        platform_config, llm_app, version_server) -> None:
    import json

    from mlplat.llm import CompletionRequest
    from mlplat.llm._remote import RemoteEngine

    handle = FakeHandle(version_server)
    remote = RemoteEngine(handle)
    raw = json.dumps({"model": "tiny-chat", "prompt": "the canary " * 200,
                      "max_tokens": 4}).encode()
    status, body, _ = asyncio.run(_core(platform_config, llm_app, remote).handle(
        raw, CompletionRequest))
    assert status == 400 and body is not None and body["field"] == "prompt"
    assert handle.streams == []  # no generation was started


def test_a_client_that_goes_away_cancels_the_remote_generation(
        platform_config, llm_app, version_server) -> None:
    from mlplat.llm import GenerationStats, SamplingParams
    from mlplat.llm._remote import RemoteEngine

    handle = FakeHandle(version_server)
    remote = RemoteEngine(handle)

    async def first_delta_only() -> None:
        agen = remote.stream("the router", SamplingParams(max_tokens=20, temperature=0),
                             GenerationStats())
        async for _ in agen:
            break
        await agen.aclose()

    asyncio.run(first_delta_only())
    assert handle.streams[0].cancelled


def test_placement_and_gpu_settings_are_checked_against_the_pool(platform_config) -> None:
    from mlplat.llm import parse_llm_app, replica_cost_usd_per_s

    serving = app_raw()["serving"]
    with pytest.raises(UserError, match=r"serving\.version_num_gpus: 1\.0 GPUs go to version "
                                        r"replicas, .*placement: deployments"):
        parse_llm_app(app_raw(serving={**serving, "version_num_gpus": 1}), platform_config)
    with pytest.raises(UserError, match=r"serving\.version_num_gpus: 1\.0 GPUs per version "
                                        r"replica, but pool 'cpu' nodes have 0"):
        parse_llm_app(app_raw(serving={**serving, "pool": "cpu", "placement": "deployments",
                                       "version_num_gpus": 1}), platform_config)
    with pytest.raises(UserError, match=r"serving\.placement: 'deployments' .* no vLLM adapter"):
        parse_llm_app(app_raw(engine="vllm", serving={**serving, "placement": "deployments"}),
                      platform_config)
    gpu = parse_llm_app(app_raw(serving={**serving, "placement": "deployments",
                                         "version_num_gpus": 1}), platform_config)
    pool = platform_config.pools["serving-ondemand"]
    # A generation holds the router's CPU share and one version replica's GPU (a whole g5).
    share = min(1.0, gpu.serving.num_cpus_per_replica / pool.cpus_per_node + 1 / pool.gpus_per_node)
    assert replica_cost_usd_per_s(platform_config, gpu) == pytest.approx(
        pool.price_usd_per_hour / 3600 * share)


def test_cuda_without_a_gpu_names_the_setting() -> None:
    import torch

    from mlplat.llm._transformers import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match=r"transformers\.device: 'cuda' but this process sees "
                                        r"no GPU"):
        resolve_device("cuda")


def test_serve_deploy_of_an_app_with_version_deployments_says_how_to_deploy_it(
        platform_config, tmp_path) -> None:
    import yaml

    from mlplat.llm import app_builder

    raw = app_raw()
    raw["serving"] = {**raw["serving"], "placement": "deployments"}
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError,
                       match=r"serving\.placement: 'deployments' .*mlplat\.llm\.deploy_llm"):
        app_builder({"app": str(tmp_path / "app.yaml"),
                     "config": str(platform_config.source_path)})
