"""Driver-side calls to the promotion controller: promote, override, rollback, status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.cluster import CONTROLLER_ACTOR

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


def promote(cfg: PlatformConfig, app: str, version: str, *, token: str | None,
            reason: str = "", override: bool = False,
            controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Gate ``version`` and start its rollout (shadow → canary steps → production).

    An app with no production version yet (never deployed) gets its *first release* instead:
    the same gates, then the router is deployed with all traffic on ``version``, the
    ``production`` alias set and the app handed to the controller — so `mlplat deploy promote`
    is the one command for a new model and for every later version.

    Args:
        token: The caller's own token (``security.people``): the controller resolves who it
            is, checks the ``deployer`` role and audits that person.
        override: Accept gates that could not be judged (a first release has no served traffic
            to judge drift on); needs the ``incident-commander`` role. A gate that was judged
            and failed still rejects.

    Returns:
        The rollout; ``status`` is ``running``, ``released`` (first release) or ``rejected``
        (then ``history[0]["gates"]`` says which gate failed and why).

    Example:
        >>> promote(cfg, "fraud", "4", token=person_token(cfg, "alice"),
        ...         reason="weekly retrain")["stage"]  # doctest: +SKIP
        'shadow'
    """
    if not _has_production(cfg, app, controller):
        return first_release(cfg, app, version, token=token, reason=reason, override=override,
                             controller=controller)
    return _call(cfg, controller, "start", app, version, token, reason, "manual",  # type: ignore[no-any-return]
                 override)


def _has_production(cfg: PlatformConfig, app: str, controller: str) -> bool:
    """True when the controller knows a last good version of ``app`` *and* its router runs
    (after a cluster restart with the same store, the app is released again)."""
    from ray import serve

    from mlplat.errors import NotFoundError

    try:
        if _call(cfg, controller, "status", app).get("last_good") is None:
            return False
    except NotFoundError:  # the controller does not manage the app: never deployed
        return False
    try:
        return app in serve.status().applications
    except Exception:  # Serve not started on this cluster: nothing serves the app
        return False


def first_release(cfg: PlatformConfig, app: str, version: str, *, token: str | None,
                  reason: str = "", override: bool = False,
                  controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Gate ``version`` of a never-deployed app in the controller and, if it passes, serve it
    at 100 %. Every gate is judged (metric, schema, model card, serving contract, features,
    drift); drift cannot be judged before any traffic, so a first release needs an incident
    commander's ``override``. A rejected version leaves nothing deployed.
    """
    from mlplat.apps import load_app
    from mlplat.contracts.v1 import TrafficSplit
    from mlplat.deployment._api import deploy
    from mlplat.experiment import set_alias

    manifest = load_app(app, cfg)
    out: dict[str, Any] = _call(cfg, controller, "first_release", manifest, manifest.name,
                                version, token, reason, override)
    if out["status"] == "released":
        out["endpoint"] = deploy(cfg, manifest, TrafficSplit(weights={version: 100.0}),
                                 actor=out["started_by"], reason=reason or "first release",
                                 controller=controller)
        set_alias(cfg, manifest.name, "production", version)
        _register_retraining(manifest)
    return out


def _register_retraining(app: Any) -> None:
    """Tell the drift monitor (when running) what retraining this app means, so critical drift
    in its traffic retrains it (jobs/train.py --alias staging → the promotion pipeline)."""
    try:
        import ray

        from mlplat.cluster import DRIFT_MONITOR_ACTOR
        from mlplat.monitoring import NAMESPACE

        monitor = ray.get_actor(DRIFT_MONITOR_ACTOR, namespace=NAMESPACE)
        ray.get(monitor.set_retrain_target.remote(app.name, app=str(app.path)), timeout=30)
    except Exception:  # no monitor (yet): it resolves the app by name when drift comes
        pass


def override(cfg: PlatformConfig, app: str, *, token: str | None, reason: str,
             controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Incident-commander override: end the shadow minimum now (audited: whose token, why).

    Example:
        >>> override(cfg, "fraud", token=person_token(cfg, "carol"),
        ...          reason="INC-42 hotfix")  # doctest: +SKIP
    """
    return _call(cfg, controller, "override", app, token, reason)  # type: ignore[no-any-return]


def rollback(cfg: PlatformConfig, app: str, *, token: str | None,
             reason: str = "manual rollback",
             controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """All traffic back to the last good version (``mlplat rollback <app>``).

    Example:
        >>> rollback(cfg, "fraud", token=person_token(cfg, "alice"),
        ...          reason="p99 regression")["status"]  # doctest: +SKIP
        'rolled_back'
    """
    return _call(cfg, controller, "rollback", app, token, reason)  # type: ignore[no-any-return]


def set_traffic(cfg: PlatformConfig, app: str, split: Any, *, token: str | None, reason: str,
                override: bool = False, controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """Set the live split by hand, through the controller's gate check.

    A version gets weight > 0 only when it is the last good version, is live already, or
    passed its gates and completed its shadow stage; otherwise ``GateBlockedError`` (409)
    names the gate — unless an incident commander sets ``override`` (audited).

    Example:
        >>> set_traffic(cfg, "fraud", TrafficSplit(weights={"1": 90, "2": 10}),
        ...             token=person_token(cfg, "alice"), reason="more canary")  # doctest: +SKIP
    """
    return _call(cfg, controller, "set_weights", app,  # type: ignore[no-any-return]
                 split.model_dump(mode="json"), token, reason, override)


def promotion_status(cfg: PlatformConfig, app: str,
                     controller: str = CONTROLLER_ACTOR) -> dict[str, Any]:
    """The app's last rollout, last good version and live SLO window per version.

    Example:
        >>> promotion_status(cfg, "fraud")["rollout"]["stage"]   # doctest: +SKIP
        'canary-25'
    """
    return _call(cfg, controller, "status", app)  # type: ignore[no-any-return]
