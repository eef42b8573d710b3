"""The production engine: Ray Serve LLM (vLLM) on the serving pool's GPU nodes.

``vllm_llm_config_kwargs`` turns the app config into the keyword arguments of
``ray.serve.llm.LLMConfig`` without importing it (so they are unit-tested on CPU machines);
``build_vllm_app`` imports ``ray.serve.llm`` only when called — it raises ``ImportError`` unless
vLLM is installed — and then builds Ray's own OpenAI-compatible app from those arguments.

Example:
    >>> kwargs = vllm_llm_config_kwargs(cfg, app)    # no vLLM needed
    >>> kwargs["accelerator_type"]
    'A10G'
    >>> serve.run(build_vllm_app(cfg, app), route_prefix=app.serving.route_prefix)  # GPU node
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.cluster import pool_selector
from mlplat.errors import UserError
from mlplat.llm._config import LLM_EXTRA_INSTALL, LocalSource, resolve_local_source

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig


def known_accelerator_types() -> set[str]:
    """Accelerator names Ray schedules on (``ray.util.accelerators``; importable without vLLM)."""
    from ray.util.accelerators import accelerators

    return {v for k, v in vars(accelerators).items() if k.isupper() and isinstance(v, str)}


def _model_source(cfg: PlatformConfig, app: LLMAppConfig) -> str:
    assert app.vllm is not None
    if app.vllm.model_source:
        return app.vllm.model_source
    if isinstance(app.model.source, LocalSource):
        return str(resolve_local_source(cfg, app))
    from mlplat.llm._registry import materialize_model

    return str(materialize_model(cfg, app.model.name, app.model.version))


def vllm_llm_config_kwargs(cfg: PlatformConfig, app: LLMAppConfig,
                           *, model_source: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ray.serve.llm.LLMConfig``, derived from app.yaml + platform.yaml.

    The accelerator type is the serving pool's ``gpu_type``; replicas carry the pool's label
    selector on every placement-group bundle; autoscaling bounds and vLLM engine kwargs come from the app's ``vllm:`` section.

    Args:
        cfg: Platform config (pools, GPU types).
        app: An LLM app with ``engine: vllm``.
        model_source: Override where vLLM loads weights from (else ``vllm.model_source``, else
            the app's model source resolved to a local folder).

    Raises:
        UserError: the app's engine is not vllm, or its pool's GPU type is unknown to Ray.

    Example:
        >>> vllm_llm_config_kwargs(cfg, app)["engine_kwargs"]["tensor_parallel_size"]
        1
    """
    if app.engine != "vllm" or app.vllm is None:
        raise UserError(f"engine: is '{app.engine}'; LLMConfig arguments exist only for 'vllm'.")
    app.check_against(cfg)
    pool = cfg.pool(app.serving.pool)
    accelerator = pool.gpu_type or ""
    known = known_accelerator_types()
    if accelerator not in known:
        from mlplat.errors import did_you_mean

        raise UserError(
            f"pools.{app.serving.pool}.gpu_type: '{accelerator}' is not an accelerator type Ray "
            f"knows.{did_you_mean(accelerator, known)} Fix it in platform.yaml."
        )
    v = app.vllm
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "dtype": v.dtype,
        **v.extra_engine_kwargs,
    }
    if v.max_model_len is not None:
        engine_kwargs["max_model_len"] = v.max_model_len
    return {
        "model_loading_config": {
            "model_id": app.model.name,
            "model_source": model_source or _model_source(cfg, app),
        },
        "accelerator_type": accelerator,
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": v.min_replicas,
                "max_replicas": v.max_replicas,
                "target_ongoing_requests": v.target_ongoing_requests,
            },
            "max_ongoing_requests": app.serving.max_ongoing_requests,
            # vLLM replicas run in a placement group (replica + engine workers): every bundle
            # lands on the serving pool (one selector is broadcast to all bundles).
            "placement_group_bundle_label_selector": [pool_selector(app.serving.pool)],
        },
        "log_engine_metrics": True,
    }


def require_ray_serve_llm() -> Any:
    """Import ``ray.serve.llm`` or fail with the exact install command.

    Raises:
        UserError: vLLM (the ``llm`` extra) is not installed.
    """
    try:
        import ray.serve.llm as serve_llm
    except ImportError as exc:
        raise UserError(
            f"engine: 'vllm' needs vLLM, which is not installed ({exc}). Install the llm extra "
            f"on the GPU node: {LLM_EXTRA_INSTALL}"
        ) from exc
    return serve_llm


def build_vllm_app(cfg: PlatformConfig, app: LLMAppConfig) -> Any:
    """Ray Serve LLM's OpenAI app (``/v1/chat/completions``, ``/v1/completions``) for the app.

    Raises:
        UserError: vLLM missing (names ``pip install -e '.[llm]'``) or a bad config.
    """
    kwargs = vllm_llm_config_kwargs(cfg, app)  # config errors first, before the import
    serve_llm = require_ray_serve_llm()
    llm_config = serve_llm.LLMConfig(**kwargs)
    return serve_llm.build_openai_app({"llm_configs": [llm_config]})
