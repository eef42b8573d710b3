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

    Returns:
        The rollout; ``status`` is ``running`` or ``rejected`` (then ``history[0]["gates"]``
        says which gate failed and why).

    Example:
        >>> promote(cfg, "fraud", "4", actor="alice", reason="weekly retrain")["stage"]  # doctest: +SKIP
        'shadow'
    """
    return _call(cfg, controller, "start", app, version, actor, reason, "manual")  # type: ignore[no-any-return]


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
