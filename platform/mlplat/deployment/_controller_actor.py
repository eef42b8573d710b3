"""The detached, named, restartable promotion-controller actor and its port to Serve/MLflow.

``get_controller(cfg)`` returns (creating if needed) the actor ``mlplat-promotion-controller`` in
namespace ``mlplat``: ``max_restarts=-1``, 0 CPU, on the platform pool. Its state lives in
``<root>/deployment/promotions.db``; a killed actor is restarted by Ray and carries on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from mlplat.cluster import CONTROLLER_ACTOR
from mlplat.contracts.v1 import GateResult, TrafficSplit
from mlplat.deployment._controller import PromotionController
from mlplat.deployment._store import PromotionStore

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig

STORE_FILE = "deployment/promotions.db"
TICK_S = 0.2
_log = logging.getLogger(__name__)


def store_path(cfg: PlatformConfig) -> str:
    """Where the controller keeps its state (under the local storage root)."""
    return str(cfg.local_path(STORE_FILE))


ROLLBACK_ALERT = "DeploymentRolledBack"
"""``alertname`` of the alert a rollback posts (routed by severity and team like drift)."""


def post_alert(cfg: PlatformConfig, severity: str, summary: str, labels: dict[str, str],
               team: str) -> str:
    """Post a rollback alert to Alertmanager through the monitoring plane's ``post_alert``
    (severity + team routing, ``$MLPLAT_ALERTMANAGER_URL`` / ``monitoring.alertmanager_url``).
    Never raises: a rollback must not fail because paging did.

    Returns:
        What happened, in words (recorded with the rollback).
    """
    from mlplat.monitoring import alertmanager_url
    from mlplat.monitoring import post_alert as post

    url = alertmanager_url(cfg)
    if not url:
        return "no Alertmanager configured"
    try:
        post(cfg, ROLLBACK_ALERT, severity, team, {k: str(v) for k, v in labels.items()},
             {"summary": summary}, url=url, timeout_s=2.0)
    except Exception as exc:
        return f"Alertmanager {url}: {type(exc).__name__}: {exc}"
    return f"posted {ROLLBACK_ALERT} ({severity}, team {team}) to Alertmanager {url}"


class ServePort:
    """The real world for ``PromotionController``: router via Serve, registry via MLflow."""

    def __init__(self, cfg: PlatformConfig) -> None:
        self.cfg = cfg
        self._builds: dict[str, dict[str, Any]] = {}

    def _build(self, app: AppConfig) -> dict[str, Any]:
        from mlplat.deployment._api import _call

        build = _call(app, "build_info", 30)
        self._builds[app.name] = build
        return build  # type: ignore[no-any-return]

    def apply_split(self, app: AppConfig, split: TrafficSplit, *, stable: str | None,
                    actor: str, reason: str) -> None:
        from mlplat.deployment._api import apply_traffic

        apply_traffic(self.cfg, app, split, actor=actor, reason=reason, stable=stable)

    def current_split(self, app: AppConfig) -> TrafficSplit | None:
        from mlplat.deployment._api import current_split

        try:
            return current_split(self.cfg, app)
        except Exception:
            return None

    def load_candidate(self, app: AppConfig, model: str, version: str) -> Any:
        from mlplat.deployment._types import ExperimentPlaneLoader
        from mlplat.errors import NotFoundError

        try:
            loader = self._build(app).get("loader")
        except NotFoundError:  # a first release: nothing deployed yet, the default loader
            loader = None
        return (loader or ExperimentPlaneLoader(self.cfg))(model, version)

    def gate_extras(self, app: AppConfig, model: str, version: str, candidate: Any,
                    production: str | None) -> tuple[float | None, list[GateResult]]:
        from mlplat.deployment._contract import contract_gate
        from mlplat.deployment._features import features_gate

        lookup = self._builds.get(app.name, {}).get("feature_lookup")
        extras = [contract_gate(app, candidate),
                  features_gate(self.cfg, app, model, version,
                                getattr(candidate, "feature_spec", None), lookup)]
        return self._drift_share(model, version), extras

    def _drift_share(self, model: str, candidate: str) -> float | None:
        # Recently served traffic vs the candidate's own training sample (registered with it):
        # a candidate trained on data unlike today's traffic is held back; one retrained on
        # data that caught up with a drift passes, even while production drifts.
        try:
            import ray

            from mlplat.cluster import DRIFT_MONITOR_ACTOR
            from mlplat.monitoring import NAMESPACE

            monitor = ray.get_actor(DRIFT_MONITOR_ACTOR, namespace=NAMESPACE)
            report: Any = ray.get(monitor.served_drift.remote(model, candidate), timeout=30)
        except Exception:
            return None
        return None if report is None else float(report.share_drifted)

    def rollback_target_check(self, app: AppConfig, model: str, version: str) -> GateResult:
        # The target served until now and passed the schema gate, so its feature spec is the
        # app's serving contract: check those features without loading the model (fast path).
        from mlplat.deployment._features import features_gate

        build = self._builds.get(app.name)
        if build is None:
            try:
                build = self._build(app)
            except Exception:
                build = {}
        return features_gate(self.cfg, app, model, version, app.features,
                             build.get("feature_lookup"))

    def staging_version(self, model: str) -> str | None:
        from mlplat.experiment import get_alias

        try:
            return get_alias(self.cfg, model, "staging")
        except Exception:
            return None

    def set_aliases(self, model: str, aliases: dict[str, str | None]) -> str | None:
        from mlflow import MlflowClient

        from mlplat.experiment import tracking_uri

        uri = tracking_uri(self.cfg)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        errors = []
        for alias, version in aliases.items():
            try:
                if version is None:
                    current = client.get_registered_model(model).aliases or {}
                    if alias in current:
                        client.delete_registered_model_alias(model, alias)
                else:
                    client.set_registered_model_alias(model, alias, version)
            except Exception as exc:
                errors.append(f"{alias}: {type(exc).__name__}: {str(exc)[:200]}")
        return "; ".join(errors) or None

    def alert(self, app: AppConfig, severity: str, summary: str,
              labels: dict[str, str]) -> str:
        return post_alert(self.cfg, severity, summary, labels, app.team)


class ControllerCommands:
    """The controller's commands as actor methods (``mlplat.deployment.promote`` & co. call
    them by name), for any actor holding a ``PromotionController`` in ``_controller``.

    Every command that changes something takes the caller's *token*, never a name: the
    platform resolves whose it is (``mlplat.secrets.identify``), checks the role the command
    needs, and audits that person — a refusal (401 no/unknown token, 403 missing role) too.
    """

    _controller: PromotionController

    def _who(self, token: str | None, app: str, action: str, *,
             incident_commander: bool = False) -> str:
        from mlplat.errors import MlplatError
        from mlplat.secrets import identify

        name = "anonymous"
        try:
            who = identify(self._controller.cfg, token)
            name = who.name
            who.require("deployer", action.replace("_", " "))
            if incident_commander:
                who.require("incident-commander", f"{action.replace('_', ' ')} with an override")
        except MlplatError as exc:
            self._controller.audit(name, f"deployment.{action}", app, reason=str(exc),
                                   details={"error": str(exc)}, outcome="denied")
            raise
        return name

    def register_app(self, app: Any, model: str, production: str | None,
                     replace: bool = True) -> None:
        self._controller.register_app(app, model, production, replace)

    def start(self, app: str, candidate: str, token: str | None, reason: str = "",
              source: str = "manual", override: bool = False) -> dict[str, Any]:
        who = self._who(token, app, "promote", incident_commander=override)
        return self._controller.start(app, candidate, actor=who, reason=reason, source=source,
                                      override_by=who if override else None)

    def first_release(self, app: Any, model: str, version: str, token: str | None,
                      reason: str = "", override: bool = False) -> dict[str, Any]:
        who = self._who(token, app.name, "first_release", incident_commander=override)
        return self._controller.first_release(app, model, version, actor=who, reason=reason,
                                              override_by=who if override else None)

    def override(self, app: str, token: str | None, reason: str) -> dict[str, Any]:
        who = self._who(token, app, "promotion_override", incident_commander=True)
        return self._controller.override(app, who, reason)

    def rollback(self, app: str, token: str | None, reason: str) -> dict[str, Any]:
        who = self._who(token, app, "rollback")
        return self._controller.rollback(app, actor=who, reason=reason)

    def set_weights(self, app: str, split: dict[str, Any], token: str | None, reason: str,
                    override: bool = False) -> dict[str, Any]:
        """A hand-set split: versions that have not earned traffic are refused (409 naming
        the gate) unless an incident commander overrides."""
        who = self._who(token, app, "set_weights", incident_commander=override)
        return self._controller.set_weights(app, TrafficSplit.model_validate(split), actor=who,
                                            reason=reason, override_by=who if override else None)

    def status(self, app: str) -> dict[str, Any]:
        return self._controller.status(app)


class ControllerActor(ControllerCommands):
    """Ray actor shell: builds the controller from the store and ticks it in a thread."""

    def __init__(self, cfg: PlatformConfig, path: str) -> None:
        from mlplat.audit._sink import audit_sink
        from mlplat.config import SqliteTracking

        self._controller = PromotionController(
            cfg, PromotionStore(path), ServePort(cfg), audit_sink(cfg),
            # No tracking server → no webhooks: watch the registry's `staging` alias instead.
            poll_registry=isinstance(cfg.active_profile().tracking, SqliteTracking),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="promotion-loop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._controller.tick()
            except Exception:  # keep ticking; the rollout row records its own errors
                _log.exception("promotion controller tick failed")
            time.sleep(TICK_S)

    def ping(self) -> dict[str, Any]:
        from mlplat.cluster import node_info

        return {**node_info(), "pid": os.getpid()}

    def report(self, app: str, replica: str, snapshot: dict[str, Any]) -> list[str]:
        return self._controller.report(app, replica, snapshot)

    def webhook_staging(self, model: str, version: str, actor: str) -> list[dict[str, Any]]:
        """A verified registry webhook: ``staging`` → ``version`` starts each app of ``model``."""
        out = []
        for managed in self._controller.store.app_for_model(model):
            self._controller.note_staging(managed.app, version)
            if managed.last_good == version:
                continue
            out.append(self._controller.start(managed.app, version, actor=actor,
                                              reason=f"registry webhook: staging → v{version}",
                                              source="webhook"))
        return out


def get_controller(cfg: PlatformConfig, name: str = CONTROLLER_ACTOR,
                   path: str | None = None) -> ActorHandle:
    """The controller actor ``name`` (created if absent; its store defaults under the root).

    Example:
        >>> ray.get(get_controller(cfg).status.remote("fraud"))   # doctest: +SKIP
    """
    from mlplat.cluster import platform_actor

    # max_task_retries: a call that meets the actor while Ray restarts it waits for the new
    # one instead of failing (every method is safe to repeat: the store guards state changes).
    return platform_actor(cfg, ControllerActor, name, cfg, path or store_path(cfg),
                          max_concurrency=16, max_task_retries=-1)
