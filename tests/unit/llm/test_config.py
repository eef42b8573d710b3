"""apps/llm/app.yaml → LLMAppConfig: bad config is a UserError naming the field, before Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplat.errors import NotFoundError, UserError
from tests.unit.llm.conftest import app_raw


def test_repo_llm_app_loads_with_transformers_default(platform_config) -> None:
    from mlplat.llm import load_llm_app

    app = load_llm_app("llm", platform_config)
    assert app.kind == "llm" and app.engine == "transformers"
    assert app.model.name == "tiny-chat" and app.model.version == "1"
    assert app.serving.pool == "serving-ondemand" and app.serving.route_prefix == "/llm"
    assert app.vllm is not None and app.vllm.tensor_parallel_size == 1
    assert app.path == (Path(platform_config.base_dir) / "apps/llm").resolve()


def test_local_source_resolves_under_the_storage_root(platform_config) -> None:
    from mlplat.llm import load_llm_app, resolve_local_source

    app = load_llm_app("llm", platform_config)
    got = resolve_local_source(platform_config, app, "2")
    assert got == Path(platform_config.root()) / "llm/models/tiny-chat/2"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"engine": "vlm"}, r"engine: Input should be 'transformers' or 'vllm' \(got 'vlm'\)"),
        ({"engine": "vllm", "vllm": None}, r"engine 'vllm' needs a `vllm:` section"),
        ({"serving": {"route_prefix": "llm"}}, r"serving\.route_prefix: String should match"),
        ({"transformers": {"max_tokens_limit": 4, "default_max_tokens": 8}},
         r"transformers: .*default_max_tokens \(8\) > max_tokens_limit \(4\)"),
        ({"transformers": {"torch_threadz": 2}}, r"transformers\.torch_threadz: Extra inputs"),
        ({"builder": {"hidden_size": 30, "num_heads": 4}},
         r"builder: .*hidden_size \(30\) must be divisible by num_heads \(4\)"),
        ({"model": {"name": "tiny-chat", "version": "v1"}}, r"model\.version: String should match"),
        ({"vllm": {"min_replicas": 3, "max_replicas": 2}},
         r"vllm: .*min_replicas \(3\) > max_replicas \(2\)"),
        ({"vllm": {"extra_engine_kwargs": {"max_model_len": 9}}},
         r"extra_engine_kwargs repeats \['max_model_len'\]"),
    ],
)
def test_bad_app_config_names_the_field(platform_config, overrides, match) -> None:
    from mlplat.llm import parse_llm_app

    with pytest.raises(UserError, match=match):
        parse_llm_app(app_raw(**overrides), platform_config)


def test_platform_checks_team_pool_and_gpus(platform_config) -> None:
    from mlplat.llm import parse_llm_app

    with pytest.raises(NotFoundError, match=r"Unknown team 'serch'.*Did you mean 'search'"):
        parse_llm_app(app_raw(team="serch"), platform_config)
    serving = {**app_raw()["serving"], "pool": "cpu"}
    with pytest.raises(UserError, match=r"serving\.pool: engine 'vllm' needs GPUs but pool "
                                        r"'cpu' has gpus_per_node=0"):
        parse_llm_app(app_raw(engine="vllm", serving=serving), platform_config)
    gpus = platform_config.pools["serving-ondemand"].gpus_per_node
    with pytest.raises(UserError, match=rf"vllm\.tensor_parallel_size: {gpus + 1} GPUs per "
                                        rf"replica, .* have {gpus}"):
        parse_llm_app(app_raw(engine="vllm", vllm={"tensor_parallel_size": gpus + 1}),
                      platform_config)
    # The transformers engine runs anywhere, the cpu pool included.
    assert parse_llm_app(app_raw(serving=serving), platform_config).serving.pool == "cpu"


def test_load_from_folder_and_unknown_app(platform_config, tmp_path: Path) -> None:
    from mlplat.llm import load_llm_app

    (tmp_path / "app.yaml").write_text(yaml.safe_dump(app_raw(name="mine")))
    assert load_llm_app(tmp_path, platform_config).name == "mine"
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(app_raw(engin="vllm")))
    with pytest.raises(UserError, match=r"app\.yaml: invalid LLM app config: engin: Extra"):
        load_llm_app(tmp_path, platform_config)
    with pytest.raises(NotFoundError, match=r"Unknown app 'lm'.*Did you mean 'llm'"):
        load_llm_app("lm", platform_config)
