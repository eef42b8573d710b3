"""Fixtures of the LLM unit tests: the repo's LLM app and a tiny real model (built once)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
# Smaller than apps/llm's builder spec: the unit tests need a real model, not a good one.
TEST_SPEC = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
             "num_heads": 4, "num_kv_heads": 2, "context_length": 96, "train_steps": 0,
             "corpus_sentences": 200}


def app_raw(**overrides: Any) -> dict[str, Any]:
    """apps/llm/app.yaml as a dict, with top-level keys replaced."""
    raw = yaml.safe_load((REPO / "apps/llm/app.yaml").read_text())
    return {**copy.deepcopy(raw), **overrides}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two versions of a tiny Llama (seeds 0 and 1) under one folder: {"1": path, "2": path}."""
    from mlplat.llm import TinyModelSpec, build_tiny_llm

    root = tmp_path_factory.mktemp("llm-models")
    spec = TinyModelSpec.model_validate(TEST_SPEC)
    return {v: build_tiny_llm(spec, root / "tiny-chat" / v, seed=int(v) - 1).path
            for v in ("1", "2")}


@pytest.fixture()
def llm_app(platform_config, tiny_models):
    """The repo's LLM app pointed at the tiny models (an absolute local source)."""
    from mlplat.llm import parse_llm_app

    root = tiny_models["1"].parent.parent
    raw = app_raw(model={"name": "tiny-chat", "version": "1",
                         "source": {"type": "local", "path": f"{root}/{{name}}/{{version}}"}},
                  transformers={"max_tokens_limit": 40, "default_max_tokens": 8})
    return parse_llm_app(raw, platform_config)
