"""LLM serving: an OpenAI-compatible Serve app on vLLM (GPU) or transformers (CPU).

The engine and model come from ``apps/<app>/app.yaml`` (``LLMAppConfig``), validated before
any cluster time is spent. ``transformers`` runs a small causal LM in the replica (the embedded
default, built offline by ``jobs/build_tiny_llm.py``); ``vllm`` builds Ray Serve LLM's app from
``vllm_llm_config_kwargs`` and needs ``pip install -e '.[llm]'``. See docs/llm.md.

Example:
    >>> from mlplat.config import load_config
    >>> from mlplat.llm import deploy_llm, load_llm_app   # doctest: +SKIP
    >>> cfg = load_config()                                # doctest: +SKIP
    >>> url = deploy_llm(cfg, load_llm_app("llm", cfg), actor="alice")   # doctest: +SKIP
    >>> httpx.post(f"{url}/chat/completions", json={"model": "tiny-chat",
    ...     "messages": [{"role": "user", "content": "hi"}]})            # doctest: +SKIP
"""

from mlplat.llm._api import app_builder as app_builder
from mlplat.llm._api import deploy_llm as deploy_llm
from mlplat.llm._api import llm_application as llm_application
from mlplat.llm._api import llm_endpoint_url as llm_endpoint_url
from mlplat.llm._api import llm_router_stats as llm_router_stats
from mlplat.llm._api import llm_shadow_report as llm_shadow_report
from mlplat.llm._api import set_llm_traffic as set_llm_traffic
from mlplat.llm._api import undeploy_llm as undeploy_llm
from mlplat.llm._builder import BuildResult as BuildResult
from mlplat.llm._builder import build_tiny_llm as build_tiny_llm
from mlplat.llm._builder import corpus as corpus
from mlplat.llm._config import LLM_EXTRA_INSTALL as LLM_EXTRA_INSTALL
from mlplat.llm._config import LLMAppConfig as LLMAppConfig
from mlplat.llm._config import TinyModelSpec as TinyModelSpec
from mlplat.llm._config import load_llm_app as load_llm_app
from mlplat.llm._config import parse_llm_app as parse_llm_app
from mlplat.llm._config import resolve_local_source as resolve_local_source
from mlplat.llm._core import LLMCore as LLMCore
from mlplat.llm._engine import AppEngineLoader as AppEngineLoader
from mlplat.llm._engine import Delta as Delta
from mlplat.llm._engine import EngineSet as EngineSet
from mlplat.llm._engine import GenerationStats as GenerationStats
from mlplat.llm._engine import LLMEngine as LLMEngine
from mlplat.llm._engine import LLMEngineLoader as LLMEngineLoader
from mlplat.llm._engine import SamplingParams as SamplingParams
from mlplat.llm._engine import StopFilter as StopFilter
from mlplat.llm._engine import load_engine as load_engine
from mlplat.llm._guard import LLMSloGuard as LLMSloGuard
from mlplat.llm._guard import get_llm_guard as get_llm_guard
from mlplat.llm._metrics import TokenAccounting as TokenAccounting
from mlplat.llm._metrics import cost_per_1k_tokens as cost_per_1k_tokens
from mlplat.llm._metrics import replica_cost_usd_per_s as replica_cost_usd_per_s
from mlplat.llm._registry import materialize_model as materialize_model
from mlplat.llm._registry import model_folder as model_folder
from mlplat.llm._registry import register_model as register_model
from mlplat.llm._router import CONVERSATION_HEADER as CONVERSATION_HEADER
from mlplat.llm._router import VERSION_HEADER as VERSION_HEADER
from mlplat.llm._router import LLMRouter as LLMRouter
from mlplat.llm._router import compare_texts as compare_texts
from mlplat.llm._router import text_similarity as text_similarity
from mlplat.llm._schemas import ChatCompletionRequest as ChatCompletionRequest
from mlplat.llm._schemas import CompletionRequest as CompletionRequest
from mlplat.llm._schemas import LLMRequestError as LLMRequestError
from mlplat.llm._schemas import parse_request as parse_request
from mlplat.llm._vllm import build_vllm_app as build_vllm_app
from mlplat.llm._vllm import require_ray_serve_llm as require_ray_serve_llm
from mlplat.llm._vllm import vllm_llm_config_kwargs as vllm_llm_config_kwargs

__all__ = [
    "CONVERSATION_HEADER",
    "LLM_EXTRA_INSTALL",
    "VERSION_HEADER",
    "AppEngineLoader",
    "BuildResult",
    "ChatCompletionRequest",
    "CompletionRequest",
    "Delta",
    "EngineSet",
    "GenerationStats",
    "LLMAppConfig",
    "LLMCore",
    "LLMEngine",
    "LLMEngineLoader",
    "LLMRequestError",
    "LLMRouter",
    "LLMSloGuard",
    "SamplingParams",
    "StopFilter",
    "TinyModelSpec",
    "TokenAccounting",
    "app_builder",
    "build_tiny_llm",
    "build_vllm_app",
    "compare_texts",
    "corpus",
    "cost_per_1k_tokens",
    "deploy_llm",
    "get_llm_guard",
    "llm_application",
    "llm_endpoint_url",
    "llm_router_stats",
    "llm_shadow_report",
    "load_engine",
    "load_llm_app",
    "materialize_model",
    "model_folder",
    "parse_llm_app",
    "parse_request",
    "register_model",
    "replica_cost_usd_per_s",
    "require_ray_serve_llm",
    "resolve_local_source",
    "set_llm_traffic",
    "text_similarity",
    "undeploy_llm",
    "vllm_llm_config_kwargs",
]
