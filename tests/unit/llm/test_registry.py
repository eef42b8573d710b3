"""LLM versions in the MLflow registry (SQLite store under a temp root): register v1 and v2,
download each once, and load them with the engine."""

from __future__ import annotations

import pytest

from mlplat.errors import NotFoundError
from tests.unit.llm.conftest import app_raw


@pytest.mark.slow
def test_register_two_versions_and_load_them_back(platform_config, tiny_models) -> None:
    from mlplat.llm import load_engine, materialize_model, parse_llm_app, register_model

    app = parse_llm_app(app_raw(model={"name": "tiny-chat-reg", "version": "2",
                                       "source": {"type": "registry"}}), platform_config)
    assert register_model(platform_config, app, tiny_models["1"]) == "1"
    assert register_model(platform_config, app, tiny_models["2"]) == "2"
    folder = materialize_model(platform_config, "tiny-chat-reg", "2")
    assert folder.is_relative_to(platform_config.root())
    assert (folder / "model.safetensors").read_bytes() == (
        tiny_models["2"] / "model.safetensors").read_bytes()
    assert materialize_model(platform_config, "tiny-chat-reg", "2") == folder  # cached
    engine = load_engine(platform_config, app)  # the app's version: 2, from the registry
    assert (engine.model, engine.version) == ("tiny-chat-reg", "2")
    with pytest.raises(NotFoundError, match=r"model\.version: LLM 'tiny-chat-reg' has no "
                                            r"registered version '9'\. Versions: \['1', '2'\]"):
        materialize_model(platform_config, "tiny-chat-reg", "9")
