"""deploy / apply_traffic / current_split / router_stats: the router's control surface."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from mlplat.audit._sink import audit_sink, audited
from mlplat.cluster import pool_selector
from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment._reconfigure import wait_for_user_config
from mlplat.deployment._serve_apps import call_app, read_user_config, start_serve, wait_app_running
from mlplat.deployment._types import FeatureLookupFactory, ModelLoader, RouterUserConfig

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig

_POLL_S = 0.1  # status polling granularity, well below any deadline it is polled against


def _build_id(cfg: PlatformConfig, app: AppConfig, loader: ModelLoader | None,
              feature_lookup: FeatureLookupFactory | None, controller: str | None = None) -> str:
    """Serve's code version for the router: equal builds update in place via ``reconfigure``.

    Serve restarts replicas whenever the code version changes and gives every imperative
    ``serve.run`` a random one; pinning it to a digest of the init args is what makes a
    split-only change a lightweight ``user_config`` update.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("mlplat")
    except PackageNotFoundError:
        pkg = "dev"
    parts = [pkg, cfg.model_dump_json(), app.model_dump_json(), repr(loader), repr(feature_lookup),
             repr(controller)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _application(cfg: PlatformConfig, app: AppConfig, user_config: RouterUserConfig,
                 loader: ModelLoader | None, feature_lookup: FeatureLookupFactory | None,
                 build_id: str, controller: str | None = None) -> Any:
    from mlplat.deployment._serve import RouterDeployment

    options: dict[str, Any] = {
        "num_replicas": app.serving.num_replicas,
        "ray_actor_options": {
            "num_cpus": app.serving.num_cpus_per_replica,
            "label_selector": pool_selector(app.serving.pool),
        },
        "user_config": user_config.model_dump(mode="json"),
        # One access-log line per request is forwarded to the driver: noise and cost on the
        # request path. Per-version counts and latencies are in GET <route>/split instead.
        "logging_config": {"enable_access_log": False},
    }
    # `version` is accepted only with `_internal=True` since Serve made it internal; see
    # _build_id for why the router needs it.
    deployment = RouterDeployment.options(  # type: ignore[attr-defined]
        **options, version=build_id, _internal=True
    )
    return deployment.bind(cfg, app, loader, feature_lookup, build_id, controller)


def _separate_versions(app: AppConfig, split: TrafficSplit) -> set[str]:
    """Versions that run as their own Serve application for this split."""
    versions = {split.shadow} if split.shadow else set()
    if app.serving.placement == "deployments":
        versions |= set(split.weights)
    return versions


def _wait_running(app: AppConfig, deadline: float, what: str) -> None:
    wait_app_running(
        app.name, deadline, what,
        f"Check that pool '{app.serving.pool}' has {app.serving.num_cpus_per_replica} free CPU "
        f"per replica ({app.serving.num_replicas} replicas) — `ray status` shows what is free.")


def endpoint_url(cfg: PlatformConfig, app: AppConfig) -> str:
    """The HTTP URL the app's router answers on (the proxy on the local cluster).

    Example:
        >>> endpoint_url(cfg, app)   # doctest: +SKIP
        'http://127.0.0.1:8000/v1/models/fraud'
    """
    return f"http://127.0.0.1:{cfg.local_cluster.serve_http_port}{app.serving.route_prefix}"


def deploy(
    cfg: PlatformConfig,
    app: AppConfig,
    split: TrafficSplit,
    *,
    actor: str,
    reason: str = "",
    model: str | None = None,
    loader: ModelLoader | None = None,
    feature_lookup: FeatureLookupFactory | None = None,
    timeout_s: float | None = None,
    controller: str | None = None,
) -> str:
    """Deploy (or update) the app's router with ``split`` and wait until it serves.

    Args:
        cfg: Platform config.
        app: The app; its ``serving`` section sets replicas, CPUs, pool and route prefix.
        split: Live weights per version and an optional shadow version.
        actor: Who is deploying (audited).
        reason: Why (audited).
        model: Registered model name; defaults to the app's name.
        loader: ``(model, version) -> ServedModel``, picklable; default: the experiment plane.
        feature_lookup: ``(cfg, app) -> FeatureLookup``, picklable; default: the data plane's
            online store client. Built once inside each replica.
        timeout_s: Deadline; defaults to the deploy SLO ``slos.deployment.deploy_after_approval_s``.
        controller: Name of the promotion-controller actor to hand the app to (created if
            absent): it then watches the registry's ``staging`` alias, runs promotions and
            rolls back on SLO breach. None: traffic changes only by hand.

    Returns:
        The endpoint URL; ``POST <url>/predict`` scores a ``PredictRequest``.

    Raises:
        InfraError: Serve could not start the router before the deadline, or the audit log is
            unavailable (then nothing is deployed).

    Example:
        >>> url = deploy(cfg, app, TrafficSplit(weights={"1": 100}), actor="alice",
        ...              reason="first release")      # doctest: +SKIP
        >>> httpx.post(f"{url}/predict", json={"entity": {"account_id": 7}, ...})  # doctest: +SKIP
    """
    from ray import serve

    cfg.pool(app.serving.pool)  # an unknown pool fails here, before any cluster work
    user_config = RouterUserConfig(model=model or app.name, split=split, issued_at=time.time())
    sink = audit_sink(cfg)
    deadline = time.monotonic() + (timeout_s or cfg.slos.deployment.deploy_after_approval_s)
    build_id = _build_id(cfg, app, loader, feature_lookup, controller)
    with audited(sink, actor=actor, action="deployment.deploy", target=app.name, reason=reason,
                 details={"split": split.model_dump(mode="json"), "model": user_config.model,
                          "build_id": build_id, "placement": app.serving.placement,
                          "controller": controller}) as details:
        start_serve(cfg)
        from mlplat.deployment._versions import ensure_versions

        # Versions in their own deployments are up and warm before the router names them.
        ensure_versions(cfg, app, loader, user_config.model, _separate_versions(app, split),
                        deadline)
        serve._run(
            _application(cfg, app, user_config, loader, feature_lookup, build_id, controller),
            name=app.name,
            route_prefix=app.serving.route_prefix,
            _blocking=False,
        )
        _wait_running(app, deadline, "deploy")
        wait_for_user_config(app.name, read_user_config(app.name), user_config, deadline)
        details["url"] = endpoint_url(cfg, app)
        if controller is not None:
            import ray

            from mlplat.deployment._controller_actor import get_controller

            production = max(sorted(split.weights), key=lambda v: split.weights[v])
            ray.get(get_controller(cfg, controller).register_app.remote(
                app, user_config.model, production), timeout=60)
    return endpoint_url(cfg, app)


def _call(app: AppConfig, method: str, timeout_s: float) -> Any:
    return call_app(app.name, method, timeout_s)


def apply_traffic(
    cfg: PlatformConfig, app: AppConfig, split: TrafficSplit, *, actor: str, reason: str = "",
    stable: str | None = None, faults: dict[str, Any] | None = None,
) -> None:
    """Apply a split to a deployed app's router without restarting its replicas.

    The mechanism under the controller, which decides *whether* a version may have traffic
    (``mlplat.deployment.set_traffic`` is the public, gate-checked way); tests and benchmarks
    of the router's mechanics call it directly.

    Only the router's ``user_config`` changes; the build (loader, feature lookup, config) is
    read back from the running router, so replicas reconfigure in place, load versions they do
    not have and drop ones no longer named. Versions that run in their own deployments (the
    shadow; every version with ``placement: deployments``) are started and warm before the
    router names them, and deleted once no split names them.

    Args:
        cfg: Platform config.
        app: The deployed app.
        split: The new split.
        actor: Who changes traffic (audited).
        reason: Why (audited).
        stable: Version that answers when the picked one fails (default: the heaviest).
        faults: Per-version fault injection (tests/chaos only); None keeps the current ones.

    Raises:
        NotFoundError: the app is not deployed.
        ConflictError: a later traffic change overtook this one before it took effect (409).
        InfraError: the split was not in force before the rollback deadline
            (``slos.deployment.rollback_after_breach_s``) or the audit log is unavailable.

    Example:
        >>> apply_traffic(cfg, app, TrafficSplit(weights={"1": 75, "2": 25}), actor="alice",
        ...               reason="canary 25 %")   # doctest: +SKIP
    """
    from ray import serve

    from mlplat.deployment._versions import ensure_versions, prune_versions

    sink = audit_sink(cfg)
    # Any traffic change may be a rollback: it must land within the rollback SLO.
    deadline = time.monotonic() + cfg.slos.deployment.rollback_after_breach_s
    build = _call(app, "build_info", cfg.slos.deployment.rollback_after_breach_s)
    current = _call(app, "user_config_state", deadline - time.monotonic()) or {}
    previous = current.get("split")
    details: dict[str, Any] = {"from": previous, "to": split.model_dump(mode="json"),
                               "stable": stable}
    if faults is not None:
        details["faults"] = faults
    with audited(sink, actor=actor, action="deployment.set_traffic", target=app.name,
                 reason=reason, details=details):
        built_app = build["app"]
        model = build["model"] or app.name
        user_config = RouterUserConfig.model_validate({
            "model": model, "split": split.model_dump(mode="json"),
            "tuning": current.get("tuning") or {}, "stable": stable,
            "faults": current.get("faults") or {} if faults is None else faults,
            "issued_at": time.time(),
        })
        ensure_versions(build["cfg"], built_app, build["loader"], model,
                        _separate_versions(built_app, split), deadline)
        serve._run(
            _application(build["cfg"], built_app, user_config, build["loader"],
                         build["feature_lookup"], build["build_id"], build.get("controller")),
            name=app.name,
            route_prefix=built_app.serving.route_prefix,
            _blocking=False,
        )
        # Overtaken by a later change: ConflictError, before pruning for a split that lost.
        wait_for_user_config(app.name, read_user_config(app.name), user_config, deadline)
        _wait_running(app, deadline, "traffic change")
        prune_versions(built_app, _separate_versions(built_app, split))


def current_split(cfg: PlatformConfig, app: AppConfig) -> TrafficSplit:
    """The split the app's router is applying now.

    Example:
        >>> current_split(cfg, app).weights   # doctest: +SKIP
        {'1': 75.0, '2': 25.0}
    """
    raw = _call(app, "split_state", cfg.slos.deployment.rollback_after_breach_s)
    return TrafficSplit.model_validate(raw)


def router_stats(cfg: PlatformConfig, app: AppConfig) -> dict[str, Any]:
    """Counters of one router replica: split, requests per version, shadow agreement, drops.

    With several replicas each keeps its own counters; this returns whichever replica the
    handle picks (the ``replica`` key says which).

    Example:
        >>> router_stats(cfg, app)["shadow"]["agreement_rate"]   # doctest: +SKIP
        0.97
    """
    return _call(app, "stats", cfg.slos.deployment.rollback_after_breach_s)  # type: ignore[no-any-return]


def undeploy(cfg: PlatformConfig, app: AppConfig, *, actor: str, reason: str = "") -> None:
    """Delete the app's router (audited).

    Example:
        >>> undeploy(cfg, app, actor="alice", reason="retired")   # doctest: +SKIP
    """
    from ray import serve

    sink = audit_sink(cfg)
    with audited(sink, actor=actor, action="deployment.undeploy", target=app.name, reason=reason):
        serve.delete(app.name)
        from mlplat.deployment._versions import prune_versions

        prune_versions(app, set())
