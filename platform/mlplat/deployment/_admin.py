"""Driver-side calls to the promotion controller: promote, override, rollback, status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.deployment._controller import CONTROLLER_ACTOR

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig

_TIMEOUT_S = 120.0


def _call(cfg: PlatformConfig, controller: str, method: str, *args: Any) -> Any:
    import time

    import ray

    from mlplat.deployment._controller_actor import get_controller

    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            return ray.get(getattr(get_controller(cfg, controller), method).remote(*args),
                           timeout=max(1.0, deadline - time.monotonic()))
        except ray.exceptions.ActorUnavailableError:
            # Ray is restarting the controller (its state is in the store): ask the new one.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise


def promote(cfg: PlatformConfig, app: str, version: str, *, actor: str, reason: str = "",
            controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Gate ``version`` and start its rollout (shadow → canary steps → production).

    An app with no production version yet (never deployed) gets its *first release* instead:
    the same gates, then the router is deployed with all traffic on ``version``, the
    ``production`` alias set and the app handed to the controller — so `mlplat deploy promote`
    is the one command for a new model and for every later version.

    Returns:
        The rollout; ``status`` is ``running``, ``released`` (first release) or ``rejected``
        (then ``history[0]["gates"]`` says which gate failed and why).

    Example:
        >>> promote(cfg, "fraud", "4", actor="alice", reason="weekly retrain")["stage"]  # doctest: +SKIP
        'shadow'
    """
    if not _has_production(cfg, app, controller):
        return first_release(cfg, app, version, actor=actor, reason=reason, controller=controller)
    return _call(cfg, controller, "start", app, version, actor, reason, "manual")  # type: ignore[no-any-return]


def _has_production(cfg: PlatformConfig, app: str, controller: str) -> bool:
    from mlplat.errors import NotFoundError

    try:
        return _call(cfg, controller, "status", app).get("last_good") is not None
    except NotFoundError:  # the controller does not manage the app: never deployed
        return False


def first_release(cfg: PlatformConfig, app: str, version: str, *, actor: str, reason: str = "",
                  controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Gate ``version`` of a never-deployed app and, if it passes, serve it at 100 %.

    Gates and the deployment are audited (``deployment.first_release``); a rejected version
    leaves nothing deployed.
    """
    import time

    from mlplat.apps import load_app
    from mlplat.contracts.v1 import TrafficSplit
    from mlplat.deployment._api import deploy
    from mlplat.deployment._audit import audit_sink
    from mlplat.deployment._gates import evaluate_gates, gates_passed
    from mlplat.experiment import load_model_version, set_alias

    manifest = load_app(app, cfg)
    results = evaluate_gates(cfg, manifest, load_model_version(cfg, manifest.name, version))
    passed = gates_passed(results)
    gates = [r.model_dump() for r in results]
    out: dict[str, Any] = {
        "id": f"first-release-{manifest.name}-{version}", "app": manifest.name,
        "baseline": None, "candidate": version, "source": "manual",
        "stage": "production" if passed else "gates",
        "status": "released" if passed else "rejected",
        "history": [{"t": time.time(), "event": "gates", "passed": passed, "gates": gates}],
    }
    audit_sink(cfg)(actor, "deployment.first_release", manifest.name, reason=reason,
                    details={"candidate": version, "gates": gates},
                    outcome="ok" if passed else "denied")
    if passed:
        out["endpoint"] = deploy(cfg, manifest, TrafficSplit(weights={version: 100.0}),
                                 actor=actor, reason=reason or "first release",
                                 controller=controller)
        set_alias(cfg, manifest.name, "production", version)
        _register_retraining(manifest)
    return out


def _register_retraining(app: Any) -> None:
    """Tell the drift monitor (when running) what retraining this app means, so critical drift
    in its traffic retrains it (jobs/train.py --alias staging → the promotion pipeline)."""
    try:
        import ray

        from mlplat.monitoring import DRIFT_MONITOR_NAME, NAMESPACE

        monitor = ray.get_actor(DRIFT_MONITOR_NAME, namespace=NAMESPACE)
        ray.get(monitor.set_retrain_target.remote(app.name, app=str(app.path)), timeout=30)
    except Exception:  # no monitor (yet): it resolves the app by name when drift comes
        pass


def override(cfg: PlatformConfig, app: str, *, person: str, reason: str,
             controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Incident-commander override: end the shadow minimum now (audited with person, reason).

    Example:
        >>> override(cfg, "fraud", person="carol", reason="INC-42 hotfix")  # doctest: +SKIP
    """
    return _call(cfg, controller, "override", app, person, reason)  # type: ignore[no-any-return]


def rollback(cfg: PlatformConfig, app: str, *, actor: str, reason: str = "manual rollback",
             controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """All traffic back to the last good version (``mlplat rollback <app>``).

    Example:
        >>> rollback(cfg, "fraud", actor="alice", reason="p99 regression")["status"]  # doctest: +SKIP
        'rolled_back'
    """
    return _call(cfg, controller, "rollback", app, actor, reason)  # type: ignore[no-any-return]


def promotion_status(cfg: PlatformConfig, app: str,
                     controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """The app's last rollout, last good version and live SLO window per version.

    Example:
        >>> promotion_status(cfg, "fraud")["rollout"]["stage"]   # doctest: +SKIP
        'canary-25'
    """
    return _call(cfg, controller, "status", app)  # type: ignore[no-any-return]
