"""deploy_llm / undeploy_llm: put an LLM app on the cluster with the engine its config names."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlplat.cluster import pool_selector
from mlplat.errors import InfraError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig
    from mlplat.llm._engine import LLMEngineLoader

_POLL_S = 0.2


def llm_endpoint_url(cfg: PlatformConfig, app: LLMAppConfig) -> str:
    """The OpenAI base URL of the app on the local cluster's proxy (``…/<prefix>/v1``).

    Example:
        >>> llm_endpoint_url(cfg, app)   # doctest: +SKIP
        'http://127.0.0.1:8000/llm/v1'
    """
    return f"http://127.0.0.1:{cfg.local_cluster.serve_http_port}{app.serving.route_prefix}/v1"


def llm_application(cfg: PlatformConfig, app: LLMAppConfig,
                    loader: LLMEngineLoader | None = None) -> Any:
    """The Serve application for the app's engine (validated first; nothing is started).

    ``transformers``: ``LLMDeployment`` replicas with ``serving.num_cpus_per_replica`` on the
    serving pool. ``vllm``: Ray Serve LLM's OpenAI app from ``vllm_llm_config_kwargs``.

    Raises:
        UserError: bad config, or vLLM chosen but not installed (names the install command).
    """
    app.check_against(cfg)
    if app.engine == "vllm":
        from mlplat.llm._vllm import build_vllm_app

        return build_vllm_app(cfg, app)
    from mlplat.llm._serve import LLMDeployment

    deployment = LLMDeployment.options(  # type: ignore[attr-defined]
        num_replicas=app.serving.num_replicas,
        max_ongoing_requests=app.serving.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": app.serving.num_cpus_per_replica,
            "label_selector": pool_selector(app.serving.pool),
        },
        logging_config={"enable_access_log": False},
    )
    return deployment.bind(cfg, app, loader)


def app_builder(args: dict[str, Any]) -> Any:
    """``serve run``/``serve deploy`` entry: ``import_path: mlplat.llm:app_builder``.

    Args:
        args: ``{"app": "llm"}`` (app name or folder) and optionally ``{"config": path}``.

    Example:
        >>> # serve run mlplat.llm:app_builder app=llm
    """
    from mlplat.config import load_config
    from mlplat.llm._config import load_llm_app

    cfg = load_config(args.get("config"))
    return llm_application(cfg, load_llm_app(args.get("app", "llm"), cfg))


def deploy_llm(cfg: PlatformConfig, app: LLMAppConfig, *, actor: str, reason: str = "",
               name: str | None = None, loader: LLMEngineLoader | None = None,
               timeout_s: float | None = None) -> str:
    """Deploy the LLM app (audited) and wait until it serves.

    Args:
        cfg: Platform config.
        app: The LLM app (its engine, model, pool, route prefix).
        actor: Who deploys (audited).
        reason: Why (audited).
        name: Serve application name; defaults to the app's name.
        loader: ``(model, version) -> LLMEngine``; default: the app's engine and model source.
        timeout_s: Deadline; defaults to ``slos.deployment.deploy_after_approval_s``.

    Returns:
        The OpenAI base URL (``POST <url>/chat/completions``).

    Raises:
        UserError: invalid config / vLLM missing — raised before anything is deployed.
        InfraError: the app failed or did not become RUNNING before the deadline.

    Example:
        >>> url = deploy_llm(cfg, load_llm_app("llm", cfg), actor="alice")   # doctest: +SKIP
    """
    from ray import serve

    from mlplat.governance import AuditLog

    application = llm_application(cfg, app, loader)  # config errors before cluster time
    audit = AuditLog(cfg)
    app_name = name or app.name
    deadline = time.monotonic() + (timeout_s or cfg.slos.deployment.deploy_after_approval_s)
    details: dict[str, Any] = {"engine": app.engine, "model": app.model.name,
                               "version": app.model.version,
                               "route_prefix": app.serving.route_prefix}
    try:
        serve.start(proxy_location="HeadOnly",
                    http_options={"host": "127.0.0.1", "port": cfg.local_cluster.serve_http_port})
        serve._run(application, name=app_name, route_prefix=app.serving.route_prefix,
                   _blocking=False)
        _wait_running(app_name, deadline)
    except BaseException as exc:
        audit.append(actor, "llm.deploy", app_name, reason=reason,
                     details={**details, "error": f"{type(exc).__name__}: {exc}"},
                     outcome="failed")
        raise
    audit.append(actor, "llm.deploy", app_name, reason=reason, details=details)
    return llm_endpoint_url(cfg, app)


def _wait_running(app_name: str, deadline: float) -> None:
    from ray import serve

    last = "NOT_STARTED"
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app_name)
        if status is not None:
            last = str(getattr(status.status, "value", status.status))
            if last == "RUNNING":
                return
            if last == "DEPLOY_FAILED":
                raise InfraError(f"deploying LLM app '{app_name}' failed: {status.message}")
        time.sleep(_POLL_S)
    raise InfraError(
        f"LLM app '{app_name}' did not reach RUNNING before its deadline (last status {last}). "
        "`ray status` shows whether the serving pool has the CPUs/GPUs its replicas ask for."
    )


def undeploy_llm(cfg: PlatformConfig, app_name: str, *, actor: str, reason: str = "") -> None:
    """Delete the LLM Serve application (audited).

    Example:
        >>> undeploy_llm(cfg, "llm", actor="alice", reason="retired")   # doctest: +SKIP
    """
    from ray import serve

    from mlplat.governance import AuditLog

    audit = AuditLog(cfg)
    serve.delete(app_name)
    audit.append(actor, "llm.undeploy", app_name, reason=reason)
