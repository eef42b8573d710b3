"""Cost per 1k tokens from the serving pool's price in platform.yaml and measured throughput."""

from __future__ import annotations

import pytest

from mlplat.errors import UserError
from tests.unit.llm.conftest import app_raw


def test_transformers_replica_is_priced_by_its_cpu_share(platform_config) -> None:
    from mlplat.llm import cost_per_1k_tokens, load_llm_app, replica_cost_usd_per_s

    app = load_llm_app("llm", platform_config)
    pool = platform_config.pools[app.serving.pool]
    per_s = pool.price_usd_per_hour / 3600 * app.serving.num_cpus_per_replica / pool.cpus_per_node
    assert replica_cost_usd_per_s(platform_config, app) == pytest.approx(per_s)
    assert cost_per_1k_tokens(platform_config, app, 50.0) == pytest.approx(per_s / 50 * 1000)
    # Twice the throughput halves the price of a token.
    assert cost_per_1k_tokens(platform_config, app, 100.0) == pytest.approx(
        cost_per_1k_tokens(platform_config, app, 50.0) / 2)


def test_vllm_replica_is_priced_by_its_gpu_share(platform_config) -> None:
    from mlplat.llm import parse_llm_app, replica_cost_usd_per_s

    app = parse_llm_app(app_raw(engine="vllm"), platform_config)
    pool = platform_config.pools["serving-ondemand"]
    # One GPU of a one-GPU g5 node: the whole node.
    assert replica_cost_usd_per_s(platform_config, app) == pytest.approx(
        pool.price_usd_per_hour / 3600 * 1 / pool.gpus_per_node)


def test_no_throughput_no_price(platform_config) -> None:
    from mlplat.llm import cost_per_1k_tokens, load_llm_app

    with pytest.raises(UserError, match=r"tokens_per_s: must be > 0 .*got 0"):
        cost_per_1k_tokens(platform_config, load_llm_app("llm", platform_config), 0)


def test_accounting_sums_generations(platform_config) -> None:
    from mlplat.llm import GenerationStats, TokenAccounting, load_llm_app

    acc = TokenAccounting()
    acc.observe(GenerationStats(prompt_tokens=10, completion_tokens=20, queue_s=0.1,
                                ttft_s=0.05, generate_s=0.5))
    acc.observe(GenerationStats(prompt_tokens=5, completion_tokens=10, queue_s=0.0,
                                ttft_s=0.15, generate_s=0.25))
    assert acc.tokens_per_s == pytest.approx(30 / 0.75)
    s = acc.summary(platform_config, load_llm_app("llm", platform_config))
    assert s["requests"] == 2 and s["prompt_tokens"] == 15 and s["completion_tokens"] == 30
    assert s["mean_ttft_ms"] == pytest.approx(100.0) and s["max_ttft_ms"] == pytest.approx(150)
    assert s["mean_queue_ms"] == pytest.approx(50.0)
    assert s["cost_usd_per_1k_tokens"] > 0
    assert GenerationStats(token_times_s=[0.1, 0.3, 0.35]).inter_token_s == pytest.approx(
        [0.2, 0.05])
