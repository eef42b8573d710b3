"""deploy_llm / undeploy_llm: put an LLM app on the cluster with the engine its config names."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlplat.cluster import pool_selector
from mlplat.deployment import (
    RouterUserConfig,
    TrafficSplit,
    call_app,
    read_user_config,
    split_versions,
    start_serve,
    wait_app_running,
    wait_for_user_config,
)

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig
    from mlplat.llm._engine import LLMEngineLoader



def llm_endpoint_url(cfg: PlatformConfig, app: LLMAppConfig) -> str:
    """The OpenAI base URL of the app on the local cluster's proxy (``…/<prefix>/v1``).

    Example:
        >>> llm_endpoint_url(cfg, app)   # doctest: +SKIP
        'http://127.0.0.1:8000/llm/v1'
    """
    return f"http://127.0.0.1:{cfg.local_cluster.serve_http_port}{app.serving.route_prefix}/v1"


def _build_id(cfg: PlatformConfig, app: LLMAppConfig, loader: LLMEngineLoader | None,
              guard: str | None) -> str:
    """Serve code version of the router: equal builds change traffic through ``reconfigure``
    (no replica restart), as the deployment plane's router does."""
    import hashlib

    parts = [cfg.model_dump_json(), app.model_dump_json(), repr(loader), repr(guard)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def llm_application(cfg: PlatformConfig, app: LLMAppConfig,
                    loader: LLMEngineLoader | None = None, *,
                    user_config: RouterUserConfig | None = None, guard: str | None = None
                    ) -> Any:
    """The Serve application for the app's engine (validated first; nothing is started).

    ``transformers``: the LLM router (``LLMDeployment``) with ``serving.num_cpus_per_replica``
    on the serving pool, its versions in-process; ``user_config`` is the deployment plane's
    ``RouterUserConfig`` (default: 100 % on ``model.version``). ``vllm``: Ray Serve LLM's
    OpenAI app from ``vllm_llm_config_kwargs`` (one version, no router yet).

    Raises:
        UserError: bad config, or vLLM chosen but not installed (names the install command).
    """
    app.check_against(cfg)
    if app.engine == "vllm":
        from mlplat.llm._vllm import build_vllm_app

        return build_vllm_app(cfg, app)
    from mlplat.llm._serve import LLMDeployment

    user_config = user_config or RouterUserConfig(
        model=app.model.name, split=TrafficSplit(weights={app.model.version: 100.0}))
    build_id = _build_id(cfg, app, loader, guard)
    deployment = LLMDeployment.options(  # type: ignore[attr-defined]
        num_replicas=app.serving.num_replicas,
        max_ongoing_requests=app.serving.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": app.serving.num_cpus_per_replica,
            "label_selector": pool_selector(app.serving.pool),
        },
        logging_config={"enable_access_log": False},
        user_config=user_config.model_dump(mode="json"),
        version=build_id, _internal=True,
    )
    return deployment.bind(cfg, app, loader, guard, build_id)


def app_builder(args: dict[str, Any]) -> Any:
    """``serve run``/``serve deploy`` entry: ``import_path: mlplat.llm:app_builder``.

    Args:
        args: ``{"app": "llm"}`` (app name or folder) and optionally ``{"config": path}``.

    Example:
        >>> # serve run mlplat.llm:app_builder app=llm
    """
    from mlplat.config import load_config
    from mlplat.errors import UserError
    from mlplat.llm._config import load_llm_app

    cfg = load_config(args.get("config"))
    app = load_llm_app(args.get("app", "llm"), cfg)
    if app.serving.placement == "deployments":
        raise UserError(
            f"serving.placement: 'deployments' runs each version of '{app.name}' as a Serve "
            "application of its own, which a Serve config file does not declare. Deploy it "
            "with mlplat.llm.deploy_llm (it starts the versions first), or use "
            "placement: in_process with `serve deploy`."
        )
    return llm_application(cfg, app)


def deploy_llm(cfg: PlatformConfig, app: LLMAppConfig, *, actor: str, reason: str = "",
               name: str | None = None, loader: LLMEngineLoader | None = None,
               timeout_s: float | None = None, split: TrafficSplit | None = None,
               guard: str | None = None) -> str:
    """Deploy the LLM app (audited) and wait until it serves.

    Args:
        cfg: Platform config.
        app: The LLM app (its engine, model, pool, route prefix).
        actor: Who deploys (audited).
        reason: Why (audited).
        name: Serve application name; defaults to the app's name.
        loader: ``(model, version) -> LLMEngine``; default: the app's engine and model source.
        timeout_s: Deadline; defaults to ``slos.deployment.deploy_after_approval_s``.
        split: Versions and weights (and a shadow); default 100 % on ``model.version``.
        guard: Name of the SLO guard actor (created if absent) that rolls a breaching canary
            back to weight 0 and runs the app's promotions (``mlplat.deployment.promote(...,
            controller=guard)``); None: traffic changes only by hand.

    Returns:
        The OpenAI base URL (``POST <url>/chat/completions``).

    Raises:
        UserError: invalid config / vLLM missing — raised before anything is deployed.
        InfraError: the app failed or did not become RUNNING before the deadline.

    Example:
        >>> url = deploy_llm(cfg, load_llm_app("llm", cfg), actor="alice")   # doctest: +SKIP
    """
    from ray import serve

    from mlplat.audit import AuditLog

    split = split or TrafficSplit(weights={app.model.version: 100.0})
    user_config = RouterUserConfig(model=app.model.name, split=split, issued_at=time.time())
    # config errors before cluster time
    application = llm_application(cfg, app, loader, user_config=user_config, guard=guard)
    audit = AuditLog(cfg)
    app_name = name or app.name
    deadline = time.monotonic() + (timeout_s or cfg.slos.deployment.deploy_after_approval_s)
    details: dict[str, Any] = {"engine": app.engine, "model": app.model.name,
                               "version": app.model.version,
                               "split": split.model_dump(mode="json"), "guard": guard,
                               "route_prefix": app.serving.route_prefix}
    guard_actor = None
    try:
        if guard is not None:
            from mlplat.llm._guard import get_llm_guard

            guard_actor = get_llm_guard(cfg, guard)
        start_serve(cfg)
        # Versions in their own applications are up and warm before the router names them.
        _ensure_versions(cfg, app, loader, app_name, split, deadline)
        serve._run(application, name=app_name, route_prefix=app.serving.route_prefix,
                   _blocking=False)
        _wait_running(app_name, deadline)
        if app.engine == "transformers":
            wait_for_user_config(app_name, read_user_config(app_name), user_config, deadline)
        if guard_actor is not None:
            import ray

            # The guard's promotion controller manages the app from here: its last good
            # version is the configured one (else the heaviest of the split).
            production = app.model.version if split.weights.get(app.model.version, 0) > 0 \
                else max(split.weights, key=lambda v: split.weights[v])
            details["production"] = production
            ray.get(guard_actor.register_app.remote(app, app.model.name, production),
                    timeout=max(1.0, deadline - time.monotonic()))
    except BaseException as exc:
        audit.append(actor, "llm.deploy", app_name, reason=reason,
                     details={**details, "error": f"{type(exc).__name__}: {exc}"},
                     outcome="failed")
        raise
    details["cost_meter"] = _register_cost(app_name, app)
    audit.append(actor, "llm.deploy", app_name, reason=reason, details=details)
    return llm_endpoint_url(cfg, app)


def _ensure_versions(cfg: PlatformConfig, app: LLMAppConfig, loader: LLMEngineLoader | None,
                     app_name: str, split: TrafficSplit, deadline: float) -> list[str]:
    """``placement: deployments``: start the version applications the split names (no-op
    for ``in_process``)."""
    if app.serving.placement != "deployments":
        return []
    from mlplat.deployment import ensure_version_apps
    from mlplat.llm._remote import llm_version_application

    return ensure_version_apps(app_name, split_versions(split),
                               lambda v: llm_version_application(cfg, app, loader, v),
                               deadline, pool=app.serving.pool)


def _register_cost(app_name: str, app: LLMAppConfig) -> str:
    """Charge the app's replicas to its team and model in the cost meter, if one runs (the
    replicas push generated tokens to it: cost per 1k tokens). Never fails the deploy."""
    import ray

    from mlplat.cluster import COST_METER_ACTOR, PLATFORM_NAMESPACE

    try:
        meter = ray.get_actor(COST_METER_ACTOR, namespace=PLATFORM_NAMESPACE)
        ray.get(meter.register_serving.remote(app_name, app.team, app.model.name), timeout=10)
    except Exception as exc:
        return f"not registered: {type(exc).__name__}"
    return "registered"


def _wait_running(app_name: str, deadline: float) -> None:
    wait_app_running(app_name, deadline, "deploy",
                     "`ray status` shows whether the serving pool has the CPUs/GPUs its "
                     "replicas ask for.")


def undeploy_llm(cfg: PlatformConfig, app_name: str, *, actor: str, reason: str = "") -> None:
    """Delete the LLM Serve application (audited).

    Example:
        >>> undeploy_llm(cfg, "llm", actor="alice", reason="retired")   # doctest: +SKIP
    """
    from ray import serve

    from mlplat.audit import AuditLog
    from mlplat.deployment import prune_version_apps

    audit = AuditLog(cfg)
    serve.delete(app_name)
    dropped = prune_version_apps(app_name, set())  # `placement: deployments` versions
    audit.append(actor, "llm.undeploy", app_name, reason=reason,
                 details={"versions_deleted": dropped})


def set_llm_traffic(cfg: PlatformConfig, app_name: str, split: TrafficSplit, *, actor: str,
                    reason: str = "", stable: str | None = None,
                    faults: dict[str, Any] | None = None, action: str = "llm.set_traffic",
                    details: dict[str, Any] | None = None) -> None:
    """Change the weights / shadow of a deployed LLM app in place (``reconfigure``), audited.

    The build (config, loader, guard) is read back from the running router, so only the Serve
    ``user_config`` changes: replicas load newly named versions (in a worker thread, serving
    on) before swapping the split in, and drop versions no longer named.

    Args:
        cfg: Platform config.
        app_name: The Serve application of the LLM app.
        split: New weights per version and optional shadow version.
        actor: Who (audited).
        reason: Why (audited).
        stable: Fallback version when the picked one fails (default: the heaviest).
        faults: Per-version fault injection, ``{"2": {"delay_s": 2.0}}`` (tests/chaos only);
            None keeps the current ones.
        action: Audit action (the SLO guard records ``llm.rollback``).
        details: Extra audit details.

    Raises:
        NotFoundError: the app is not deployed.
        UserError: invalid split/faults.
        ConflictError: a later traffic change overtook this one before it took effect (409).
        InfraError: not in force within ``slos.deployment.rollback_after_breach_s``.

    Example:
        >>> set_llm_traffic(cfg, "llm", TrafficSplit(weights={"1": 90, "2": 10}),
        ...                 actor="alice", reason="canary 10 %")   # doctest: +SKIP
    """
    from pydantic import ValidationError
    from ray import serve

    from mlplat.audit import AuditLog
    from mlplat.errors import UserError

    audit = AuditLog(cfg)  # opened first: no audit log, no change
    deadline = time.monotonic() + cfg.slos.deployment.rollback_after_breach_s
    build = call_app(app_name, "build_info", cfg.slos.deployment.rollback_after_breach_s)
    current = build["user_config"] or {}
    info: dict[str, Any] = {"from": current.get("split"), "to": split.model_dump(mode="json"),
                            "stable": stable, **(details or {})}
    if faults is not None:
        info["faults"] = faults
    try:
        try:
            user_config = RouterUserConfig.model_validate({
                "model": build["app"].model.name, "split": split.model_dump(mode="json"),
                "tuning": current.get("tuning") or {}, "stable": stable,
                "faults": (current.get("faults") or {}) if faults is None else faults,
                "issued_at": time.time()})
        except ValidationError as exc:
            raise UserError(f"invalid traffic for LLM app '{app_name}': {exc}") from exc
        info["versions_started"] = _ensure_versions(build["cfg"], build["app"], build["loader"],
                                                    app_name, split, deadline)
        serve._run(llm_application(build["cfg"], build["app"], build["loader"],
                                   user_config=user_config, guard=build["guard"]),
                   name=app_name, route_prefix=build["app"].serving.route_prefix,
                   _blocking=False)
        # Overtaken by a later change: ConflictError, before pruning for a split that lost.
        wait_for_user_config(app_name, read_user_config(app_name), user_config, deadline)
        if build["app"].serving.placement == "deployments":
            from mlplat.deployment import prune_version_apps

            # Once every router replica runs the new split, versions it no longer names go.
            _wait_running(app_name, deadline)
            info["versions_deleted"] = prune_version_apps(app_name, split_versions(split))
    except BaseException as exc:
        audit.append(actor, action, app_name, reason=reason,
                     details={**info, "error": f"{type(exc).__name__}: {exc}"}, outcome="failed")
        raise
    info["in_force_s"] = round(cfg.slos.deployment.rollback_after_breach_s
                               - (deadline - time.monotonic()), 3)
    if action == "llm.set_traffic" and build["guard"]:
        info["unblocked"] = _unblock(build["guard"], app_name, split)
    audit.append(actor, action, app_name, reason=reason, details=info)


def _unblock(guard: str, app_name: str, split: TrafficSplit) -> str:
    """A hand-set split that gives a rolled-back version traffic again lifts its block (the
    guard's replies would otherwise keep diverting it). Never fails the change."""
    import ray

    from mlplat.cluster import PLATFORM_NAMESPACE

    try:
        actor = ray.get_actor(guard, namespace=PLATFORM_NAMESPACE)
        live = {v for v, w in split.weights.items() if w > 0} | (
            {split.shadow} if split.shadow else set())
        ray.get(actor.unblock.remote(app_name, sorted(live)), timeout=10)
    except Exception as exc:
        return f"not told: {type(exc).__name__}"
    return "told"


def llm_router_stats(cfg: PlatformConfig, app_name: str) -> dict[str, Any]:
    """One replica's router counters: requests per version, key sources, fallbacks, shadow.

    Example:
        >>> llm_router_stats(cfg, "llm")["requests_by_version"]   # doctest: +SKIP
        {'1': 61, '2': 39}
    """
    return call_app(app_name, "router_stats", cfg.slos.deployment.rollback_after_breach_s)  # type: ignore[no-any-return]


def llm_shadow_report(cfg: PlatformConfig, app_name: str) -> dict[str, Any]:
    """Shadow comparison of an LLM app: exact-match rate, token-length delta, similarity
    (difflib word ratio) per live→shadow pair, and per-version TTFT/ITL/error windows.

    Example:
        >>> llm_shadow_report(cfg, "llm")["comparisons"]["1->2"]["exact_match_rate"]  # doctest: +SKIP
        0.25
    """
    return llm_router_stats(cfg, app_name)["shadow"]  # type: ignore[no-any-return]
