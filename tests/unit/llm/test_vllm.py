"""The vLLM path on a CPU machine: generated LLMConfig arguments, and the missing-extra error.

vLLM is never imported here: the arguments are checked against our own expectations from
platform.yaml and, where Ray's LLMConfig model can be imported without vLLM, against it too.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from mlplat.errors import UserError
from tests.unit.llm.conftest import app_raw


@pytest.fixture()
def vllm_app(platform_config):
    from mlplat.llm import parse_llm_app

    return parse_llm_app(app_raw(engine="vllm", vllm={
        "tensor_parallel_size": 1, "max_model_len": 512, "min_replicas": 1, "max_replicas": 3,
        "target_ongoing_requests": 8, "extra_engine_kwargs": {"enable_prefix_caching": True},
    }), platform_config)


def test_llm_config_kwargs_come_from_app_and_platform_yaml(platform_config, vllm_app) -> None:
    from mlplat.llm import resolve_local_source, vllm_llm_config_kwargs

    kw = vllm_llm_config_kwargs(platform_config, vllm_app)
    pool = platform_config.pools["serving-ondemand"]
    assert kw["accelerator_type"] == pool.gpu_type == "A10G"
    assert kw["model_loading_config"] == {
        "model_id": "tiny-chat",
        "model_source": str(resolve_local_source(platform_config, vllm_app)),
    }
    assert kw["engine_kwargs"] == {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9,
                                   "dtype": "auto", "max_model_len": 512,
                                   "enable_prefix_caching": True}
    dc = kw["deployment_config"]
    assert dc["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3,
                                        "target_ongoing_requests": 8}
    assert dc["max_ongoing_requests"] == vllm_app.serving.max_ongoing_requests
    assert dc["placement_group_bundle_label_selector"] == [{"pool": "serving-ondemand"}]
    assert "vllm" not in sys.modules


def test_explicit_model_source_wins(platform_config) -> None:
    from mlplat.llm import parse_llm_app, vllm_llm_config_kwargs

    app = parse_llm_app(app_raw(engine="vllm", vllm={"model_source": "s3://models/tiny"}),
                        platform_config)
    kw = vllm_llm_config_kwargs(platform_config, app)
    assert kw["model_loading_config"]["model_source"] == "s3://models/tiny"


def test_kwargs_validate_against_rays_own_llm_config(platform_config, vllm_app) -> None:
    """Ray's LLMConfig is pydantic and importable without vLLM (ray.serve.llm is not)."""
    from mlplat.llm import vllm_llm_config_kwargs

    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError as exc:  # a Ray release that moved it: our own checks above still ran
        pytest.skip(f"Ray's LLMConfig model is not importable here: {exc}")
    config = LLMConfig(**vllm_llm_config_kwargs(platform_config, vllm_app))
    assert config.model_id == "tiny-chat"
    assert config.accelerator_type == "A10G"
    assert config.engine_kwargs["tensor_parallel_size"] == 1
    assert config.max_request_context_length == 512
    assert "vllm" not in sys.modules


def test_unknown_gpu_type_in_platform_yaml_is_named(platform_config, vllm_app) -> None:
    from mlplat.llm import vllm_llm_config_kwargs

    pools = dict(platform_config.pools)
    pools["serving-ondemand"] = pools["serving-ondemand"].model_copy(update={"gpu_type": "A10"})
    cfg = platform_config.model_copy(update={"pools": pools})
    with pytest.raises(UserError, match=r"pools\.serving-ondemand\.gpu_type: 'A10' is not an "
                                        r"accelerator type Ray knows\. Did you mean 'A10G'"):
        vllm_llm_config_kwargs(cfg, vllm_app)


def test_transformers_app_has_no_llm_config(platform_config) -> None:
    from mlplat.llm import load_llm_app, vllm_llm_config_kwargs

    with pytest.raises(UserError, match="engine: is 'transformers'"):
        vllm_llm_config_kwargs(platform_config, load_llm_app("llm", platform_config))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_error_names_the_install_command(platform_config, vllm_app) -> None:
    from mlplat.llm import build_vllm_app, llm_application

    exact = r"Install the llm extra on the GPU node: pip install -e '\.\[llm\]'"
    with pytest.raises(UserError, match=exact):
        build_vllm_app(platform_config, vllm_app)
    with pytest.raises(UserError, match=exact):  # the Serve entry point takes the same path
        llm_application(platform_config, vllm_app)


def test_vllm_is_not_an_in_process_engine(platform_config, vllm_app) -> None:
    from mlplat.llm import load_engine

    with pytest.raises(UserError, match=r"not an in-process engine.*build_vllm_app"):
        load_engine(platform_config, vllm_app)


def test_serve_entry_builds_the_transformers_app_on_the_serving_pool(platform_config) -> None:
    """`import_path: mlplat.llm:app_builder` → LLMDeployment sized and placed from app.yaml."""
    from mlplat.llm import app_builder, load_llm_app

    application = app_builder({"app": "llm"})
    deployment = application._bound_deployment
    app = load_llm_app("llm", platform_config)
    assert deployment.name == "llm"
    assert deployment.num_replicas == app.serving.num_replicas
    assert deployment.ray_actor_options["num_cpus"] == app.serving.num_cpus_per_replica
    assert deployment.ray_actor_options["label_selector"] == {"pool": "serving-ondemand"}
    assert deployment.max_ongoing_requests == app.serving.max_ongoing_requests
