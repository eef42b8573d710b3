"""The promotion controller's logic as a plain class: a clock, a store and a port to the world.

A rollout is a row in ``PromotionStore``; every decision reads it and writes it back, so the
actor around this class (``_controller_actor.py``) can be killed at any moment and its
replacement continues where the store says. Live SLOs come from router replicas' pushes
(``report``) through ``SloWindows``.

Stages come from ``promotion_plan``: shadow (at least ``promotion_timing.shadow_min_s``, bypassed
only by an audited incident-commander override) → each ``promotion.canary_steps_pct`` step →
production. A stage is left only after it held for ``max(hold, evaluation_window_s)`` with the
candidate inside its SLO over the last window; any breach rolls back to the last good version.

The controller is also the only way a version gets traffic: a first release and every split
set by hand pass ``clearance`` (gates passed and shadow completed, or an incident commander's
override), and between rollouts it keeps judging every live version (``_guard``): a breach
sends traffic back to the last good version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from mlplat.audit._sink import AuditSink
from mlplat.contracts.v1 import GateResult, TrafficSplit
from mlplat.deployment._gates import evaluate_gates, gates_passed
from mlplat.deployment._promotion import PRODUCTION_STAGE, SHADOW_STAGE, promotion_plan
from mlplat.deployment._slo import SloWindows, WindowStats, breach
from mlplat.deployment._store import (
    DONE,
    REJECTED,
    ROLLED_BACK,
    RUNNING,
    PromotionStore,
    Rollout,
)
from mlplat.errors import GateBlockedError, NotFoundError, UserError

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig

_log = logging.getLogger(__name__)

"""Default name of the detached controller actor (namespace ``mlplat``)."""
STAGE_ALIASES = ("shadow", "canary")
"""Registry aliases that mirror live traffic, besides ``production``."""

Judge = Callable[[WindowStats], "str | None"]
"""Why a candidate's window breaches its SLOs, or None (tabular: ``promotion`` of platform.yaml;
LLM: ``slos.llm``)."""


class ControllerPort(Protocol):
    """Everything the controller does to the outside world (real: ``_controller_actor``)."""

    def apply_split(self, app: AppConfig, split: TrafficSplit, *, stable: str | None,
                    actor: str, reason: str) -> None: ...

    def current_split(self, app: AppConfig) -> TrafficSplit | None: ...

    def load_candidate(self, app: AppConfig, model: str, version: str) -> Any: ...

    def gate_extras(self, app: AppConfig, model: str, version: str, candidate: Any,
                    production: str | None) -> tuple[float | None, list[GateResult]]:
        """(drift share or None, extra gate results: contract, features)."""
        ...

    def rollback_target_check(self, app: AppConfig, model: str, version: str) -> GateResult: ...

    def staging_version(self, model: str) -> str | None: ...

    def set_aliases(self, model: str, aliases: dict[str, str | None]) -> str | None:
        """Point/remove aliases; returns an error text instead of raising."""
        ...

    def alert(self, app: AppConfig, severity: str, summary: str,
              labels: dict[str, str]) -> str: ...

    # Optional (looked up with getattr, so a port may leave them out):
    #   candidate_gates(app, model, version, candidate, production) -> list[GateResult]
    #       replaces the tabular gates (metric, schema, card, drift, contract, features);
    #   stage_gate(app, baseline, candidate, stage) -> GateResult | None
    #       judged when a stage is about to pass (LLM: shadow text similarity); a failed
    #       result rolls the candidate back.


class PromotionController:
    """Runs promotions from the store; ``tick`` is called by the actor's loop.

    Example:
        >>> c = PromotionController(cfg, store, port, audit, clock=fake_clock)   # doctest: +SKIP
        >>> c.register_app(app, "fraud", production="1")                          # doctest: +SKIP
        >>> c.start("fraud", "2", actor="alice", reason="retrain")                # doctest: +SKIP
        >>> c.tick()                                                              # doctest: +SKIP
    """

    def __init__(self, cfg: PlatformConfig, store: PromotionStore, port: ControllerPort,
                 audit: AuditSink, *, clock: Callable[[], float] = time.time,
                 poll_registry: bool = True, judge: Judge | None = None,
                 app_type: Any = None, min_window_requests: int = 0,
                 guard_production: bool = True) -> None:
        self.cfg = cfg
        self.store = store
        self.port = port
        self.audit = audit
        self.clock = clock
        self.poll_registry = poll_registry
        timing = cfg.active_profile().promotion_timing
        self.window_s = timing.evaluation_window_s
        self.poll_interval_s = max(0.5, self.window_s / 2)
        self.slo = SloWindows(history_s=max(60.0, 4 * self.window_s))
        policy = cfg.promotion
        self._judge: Judge = judge or (lambda stats: breach(
            stats, policy.rollback_max_error_rate, policy.rollback_max_p99_ms))
        self._app_type = app_type  # the app config class (default: the tabular AppConfig)
        # > 0: a stage's window widens (never before the stage began) until it holds this many
        # candidate requests, so a low-traffic canary's latency is judged too (LLM apps).
        self._min_window_requests = min_window_requests
        self._started_at = clock()
        self._next_poll = 0.0
        # Between rollouts every live version is judged too (off: a host with its own guard).
        self._guard_production = guard_production
        self._next_guard = 0.0
        self._guard_alerted: dict[tuple[str, str], float] = {}
        self._breaches: dict[tuple[str, str], float] = {}  # (app, what) → first seen breaching
        self._verified: set[int] = set()
        # app → (rollout id, stage index, counted until, candidate requests in the stage).
        self._stage_served: dict[str, tuple[int, int, float, int]] = {}
        self._lock = threading.RLock()
        # Versions rolled back, per app: router replicas learn them from the reply to their
        # next SLO report and stop answering with them at once, before the split change (a
        # Serve reconfigure, 1-3 s) reaches them. Cleared when the version is promoted or
        # given weight by hand again.
        self._blocked: dict[str, set[str]] = {}
        # (app, version) → [blocked at, first told to a replica at] (the drills measure it).
        self._block_times: dict[tuple[str, str], list[float | None]] = {}

    # ------------------------------------------------------------------ registration

    def register_app(self, app: AppConfig, model: str, production: str | None,
                     replace: bool = True) -> None:
        """Manage ``app`` (its router serves ``model``); ``production`` is its last good version
        (``replace=False``: only if none is known yet)."""
        with self._lock:
            self.store.upsert_app(app.name, model, app.model_dump_json(), str(app.path),
                                  last_good=production, now=self.clock(), replace=replace)

    def _app(self, name: str) -> tuple[AppConfig, str, str | None]:
        from mlplat.apps import AppConfig

        app_type = self._app_type or AppConfig
        managed = self.store.app(name)
        if managed is None:
            known = [a.app for a in self.store.apps()]
            raise NotFoundError(f"the promotion controller does not manage app '{name}' "
                                f"(it manages {known}); release it with `mlplat deploy promote {name} "
                                "<version> --reason ...`.")
        import json

        app = app_type.model_validate({**json.loads(managed.app_json), "path": managed.app_path})
        return app, managed.model, managed.last_good

    def report(self, app: str, replica: str, snapshot: dict[str, Any]) -> list[str]:
        """A router replica's cumulative per-version counters (pushed every few hundred ms).

        Returns:
            The app's blocked versions: the replica answers their requests with its stable
            version until a report no longer lists them.
        """
        now = self.clock()
        self.slo.report(app, replica, snapshot, now)
        blocked = sorted(self._blocked.get(app, ()))
        for version in blocked:
            times = self._block_times.get((app, version))
            if times is not None and times[1] is None:
                times[1] = now
        return blocked

    def unblock(self, app: str, versions: Any) -> None:
        """Let ``versions`` of ``app`` answer again (a new rollout, weights set by hand)."""
        self._blocked[app] = self._blocked.get(app, set()) - set(versions)

    # ------------------------------------------------------------------ commands

    def start(self, app_name: str, candidate: str, *, actor: str, reason: str = "",
              source: str = "manual", override_by: str | None = None) -> dict[str, Any]:
        """Gate ``candidate`` and, if every gate passes, begin its rollout.

        ``override_by`` (an incident commander, authorized by the caller) accepts gates that
        failed or could not be judged (each named in its detail, all audited); the rollout
        still goes through shadow and the canary steps.

        Returns:
            The rollout (``status`` ``running``, or ``rejected`` with the failed gates).

        Raises:
            NotFoundError: the app is not managed.
            UserError: a rollout is already running, or ``candidate`` is the production version.
        """
        with self._lock:
            app, model, last_good = self._app(app_name)
            running = self.store.active(app_name)
            if running:
                raise UserError(f"app '{app_name}' is already promoting version "
                                f"{running[0].candidate} (stage {self._stage_name(running[0])});"
                                " wait for it or `mlplat rollback " + app_name + "`.")
            if last_good is None:
                raise UserError(f"app '{app_name}' has no production version yet; deploy one "
                                "first (`mlplat deploy`).")
            if candidate == last_good:
                raise UserError(f"version {candidate} is already production for '{app_name}'.")
            now = self.clock()
            results = self._load_and_gate(app, model, candidate, last_good, override_by)
            passed = gates_passed(results)
            if passed:
                self.unblock(app_name, [candidate])  # a new rollout judges it afresh
            gates = [r.model_dump() for r in results]
            history = [{"t": now, "event": "gates", "passed": passed, "gates": gates}]
            rollout = self.store.create_rollout(
                app=app_name, model=model, baseline=last_good, candidate=candidate,
                started_by=actor, source=source, reason=reason,
                status=RUNNING if passed else REJECTED, history=history, now=now)
            self.audit(actor, "deployment.promotion.gates", app_name, reason=reason,
                       details={"candidate": candidate, "production": last_good,
                                "source": source, "gates": gates, "rollout": rollout.id,
                                "override_by": override_by},
                       outcome="ok" if passed else "denied")
            return self._summary(rollout)

    def first_release(self, app: AppConfig, model: str, version: str, *, actor: str,
                      reason: str = "", override_by: str | None = None) -> dict[str, Any]:
        """Judge every gate for the first version of a never-deployed app.

        The same gates as a rollout (metric, schema, model card, serving contract, features,
        drift); nothing is served yet, so the drift gate cannot be judged and needs an incident
        commander's ``override_by``. The caller deploys only a ``released`` answer; the app is
        registered (no production yet) either way.

        Raises:
            UserError: the app already has a production version (promote instead).
        """
        with self._lock:
            managed = self.store.app(app.name)
            # A last good version whose router is gone (a new cluster, the same store) is
            # released again; one that serves is promoted instead.
            if managed is not None and managed.last_good is not None \
                    and self.port.current_split(app) is not None:
                raise UserError(f"app '{app.name}' already serves v{managed.last_good}: "
                                f"`mlplat deploy promote {app.name} {version}` rolls out a new "
                                "version through shadow and canary.")
            self.register_app(app, model, None, replace=False)
            results = self._load_and_gate(app, model, version, None, override_by)
            passed = gates_passed(results)
            gates = [r.model_dump() for r in results]
            self.audit(actor, "deployment.first_release", app.name, reason=reason,
                       details={"candidate": version, "gates": gates,
                                "override_by": override_by},
                       outcome="ok" if passed else "denied")
            return {"id": f"first-release-{app.name}-{version}", "app": app.name,
                    "baseline": None, "candidate": version, "source": "manual",
                    "started_by": actor, "stage": "production" if passed else "gates",
                    "status": "released" if passed else "rejected",
                    "history": [{"t": self.clock(), "event": "gates", "passed": passed,
                                 "gates": gates}]}

    # ------------------------------------------------------------------ traffic by hand

    def clearance(self, app_name: str, split: TrafficSplit) -> dict[str, str]:
        """Versions ``split`` would give traffic that have not earned it: version → the gate
        that blocks it. Empty when every version with weight > 0 is the last good version, is
        live already, was production before, or passed its gates and completed its shadow
        stage."""
        _app, _model, last_good = self._app(app_name)
        current = self.port.current_split(_app)
        live = {v for v, w in (current.weights.items() if current else ()) if w > 0}
        blocked: dict[str, str] = {}
        for version, weight in sorted(split.weights.items()):
            if weight <= 0 or version == last_good or version in live \
                    or self.store.was_production(app_name, version):
                continue
            r = self.store.latest_for(app_name, version)
            if r is None:
                blocked[version] = (f"gates: v{version} never went through the promotion gates "
                                    f"(`mlplat deploy promote {app_name} {version}`)")
            elif r.status == REJECTED:
                failed = [g["name"] for h in r.history if h.get("event") == "gates"
                          for g in h.get("gates", []) if not g.get("passed")]
                blocked[version] = f"gates: v{version} failed gate(s) {failed}"
            elif r.status == ROLLED_BACK:
                why = next((h.get("why") for h in reversed(r.history)
                            if h.get("event") == "rolled_back"), "")
                blocked[version] = f"rollback: v{version} was rolled back ({why})"
            elif r.status == RUNNING and not any(
                    h.get("event") == "stage_passed" and h.get("stage") == SHADOW_STAGE
                    for h in r.history):
                blocked[version] = f"shadow: v{version} has not completed its shadow stage"
        return blocked

    def set_weights(self, app_name: str, split: TrafficSplit, *, actor: str, reason: str,
                    override_by: str | None = None) -> dict[str, Any]:
        """A split set by hand: only versions that earned traffic (``clearance``) get weight,
        unless an incident commander (``override_by``, authorized by the caller) overrides.

        Raises:
            GateBlockedError: a version has not earned traffic (409, naming the gate).
            UserError: a rollout is running (roll it back or wait).
        """
        with self._lock:
            app, _model, _last_good = self._app(app_name)
            if self.store.active(app_name):
                raise UserError(f"app '{app_name}' is in a rollout; `mlplat rollback "
                                f"{app_name}` (or wait) before setting weights by hand.")
            blocked = self.clearance(app_name, split)
            details: dict[str, Any] = {"split": split.model_dump(mode="json"),
                                       "blocked": blocked, "override_by": override_by}
            if blocked and override_by is None:
                self.audit(actor, "deployment.set_weights", app_name, reason=reason,
                           details=details, outcome="denied")
                raise GateBlockedError(
                    f"{app_name}: " + "; ".join(blocked.values()) + ". Promote it through "
                    "the controller, or have an incident commander override.")
            self.unblock(app_name, {v for v, w in split.weights.items() if w > 0}
                         | ({split.shadow} if split.shadow else set()))
            self.port.apply_split(app, split, stable=None, actor=actor, reason=reason)
            self.audit(actor, "deployment.set_weights", app_name, reason=reason, details=details)
            return {"app": app_name, "split": split.model_dump(mode="json"),
                    "overridden": blocked}

    def _load_and_gate(self, app: AppConfig, model: str, candidate: str,
                       last_good: str | None, override_by: str | None) -> list[GateResult]:
        try:
            model_obj = self.port.load_candidate(app, model, candidate)
        except Exception as exc:
            return [GateResult(name="load", passed=False, detail=f"cannot load {model} "
                               f"v{candidate}: {type(exc).__name__}: {exc}")]
        return self._gates(app, model, candidate, model_obj, last_good, override_by)

    def _gates(self, app: AppConfig, model: str, candidate: str, model_obj: Any,
               last_good: str | None, override_by: str | None = None) -> list[GateResult]:
        own = getattr(self.port, "candidate_gates", None)
        if own is not None:
            results = list(own(app, model, candidate, model_obj, last_good))
        else:
            drift, extras = self.port.gate_extras(app, model, candidate, model_obj, last_good)
            results = evaluate_gates(self.cfg, app, model_obj, drift_share=drift) + extras
            if drift is None:
                results.append(GateResult(
                    name="drift", passed=False, judged=False,
                    detail="cannot be judged: the drift monitor has no served traffic of "
                    f"'{model}' to compare with v{candidate}'s training reference (first "
                    "release, or the monitor is down); an incident commander may accept it "
                    "(--override)"))
        if override_by is None:
            return results
        # An incident commander's override accepts a gate that failed or could not be
        # judged, named in its detail (and audited with the gates); a version that cannot
        # even be loaded is never accepted.
        return [r if r.passed or r.name == "load" else r.model_copy(update={
            "passed": True, "detail": f"{r.detail} — {'failed' if r.judged else 'unjudged'}, "
            f"accepted by incident commander {override_by}"}) for r in results]

    def override(self, app_name: str, person: str, reason: str) -> dict[str, Any]:
        """Incident-commander bypass of the shadow minimum, by ``person`` (authenticated and
        authorized as an incident commander by the caller) for a stated reason.

        Raises:
            UserError: no reason, or no rollout in its shadow stage.
        """
        with self._lock:
            if not person.strip() or not reason.strip():
                self.audit(person or "unknown", "deployment.promotion.override", app_name,
                           reason=reason, details={"error": "a reason is required"},
                           outcome="denied")
                raise UserError("an override needs a reason, e.g. --reason 'INC-42 hotfix'.")
            running = self.store.active(app_name)
            if not running or self._stage_name(running[0]) != SHADOW_STAGE:
                where = self._stage_name(running[0]) if running else "no rollout"
                self.audit(person, "deployment.promotion.override", app_name, reason=reason,
                           details={"error": f"not in shadow ({where})"}, outcome="denied")
                raise UserError(f"nothing to override for '{app_name}': the shadow minimum "
                                f"applies only in the shadow stage (now: {where}).")
            r = running[0]
            r.override_by, r.override_reason = person, reason
            r.history.append({"t": self.clock(), "event": "override", "person": person,
                              "reason": reason})
            self.store.save(r, self.clock())
            self.audit(person, "deployment.promotion.override", app_name, reason=reason,
                       details={"rollout": r.id, "candidate": r.candidate,
                                "skipped": "shadow minimum"})
            return self._summary(r)

    def rollback(self, app_name: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Return all traffic to the last good version (by hand: ``mlplat rollback <app>``).

        A running rollout is rolled back to its baseline; otherwise the last completed
        promotion is undone (traffic to its baseline, which becomes the last good version).

        Raises:
            UserError: nothing to roll back.
        """
        with self._lock:
            _app, _model, last_good = self._app(app_name)
            running = self.store.active(app_name)
            if running:
                return self._rollback(running[0], why=reason or "manual rollback", actor=actor)
            # The last completed promotion, even if rejected candidates came after it (a
            # rejection changed nothing).
            latest = self.store.latest_with_status(app_name, DONE)
            if latest is None or latest.candidate != last_good:
                raise UserError(f"nothing to roll back for '{app_name}': no rollout running and "
                                f"the last good version ({last_good}) is not the result of a "
                                "completed promotion.")
            latest.status = RUNNING  # undo the completed promotion the same way
            return self._rollback(latest, why=reason or "manual rollback", actor=actor)

    def status(self, app_name: str) -> dict[str, Any]:
        """The app's last rollout (or ``{}``), its last good version and live SLO windows.

        Lock-free (the store is the truth): answers while a stage change is being applied.
        """
        _app, _model, last_good = self._app(app_name)
        latest = self.store.latest(app_name)
        out: dict[str, Any] = {"app": app_name, "last_good": last_good,
                               "rollout": self._summary(latest) if latest else None}
        now = self.clock()
        if latest is not None:
            out["window"] = {
                v: self.slo.window(app_name, v, now - self.window_s, now).as_dict()
                for v in (latest.baseline, latest.candidate)}
        out["blocked"] = {
            v: {"since": t[0], "replica_told_at": t[1]}
            for v in sorted(self._blocked.get(app_name, ()))
            if (t := self._block_times.get((app_name, v)))}
        return out

    # ------------------------------------------------------------------ the loop

    def tick(self) -> None:
        """One pass: poll the registry (when due) and advance or roll back running rollouts."""
        now = self.clock()
        if self.poll_registry and now >= self._next_poll:
            self._next_poll = now + self.poll_interval_s
            self._poll()
        for r in self.store.active():
            try:
                with self._lock:
                    fresh = self.store.get(r.id)
                    if fresh is not None and fresh.status == RUNNING:
                        self._advance(fresh)
            except Exception as exc:  # one broken rollout must not stop the others
                r.history.append({"t": self.clock(), "event": "error",
                                  "error": f"{type(exc).__name__}: {exc}"})
                self.store.save(r, self.clock())
        if self._guard_production and now >= self._next_guard:
            self._next_guard = now + self.poll_interval_s
            for managed in self.store.apps():
                if managed.last_good is None or self.store.active(managed.app):
                    continue
                try:
                    with self._lock:
                        self._guard(managed.app)
                except Exception:  # one app's failure must not stop guarding the others
                    _log.exception("production guard of app %s failed", managed.app)

    # ------------------------------------------------------------------ guarding production

    def _guard(self, app_name: str) -> None:
        """Judge every live version of an app no rollout is changing; a breach sends its
        traffic back to the last good version (a hand-set canary) or undoes the promotion
        that made it production. Recorded as a rollout with ``source="guard"``."""
        now = self.clock()
        if now - self._started_at < self.window_s or self.store.active(app_name):
            return  # judge only a window this process observed itself
        app, model, last_good = self._app(app_name)
        split = self.port.current_split(app)
        if split is None:
            return
        needed = max(1, self.cfg.promotion.min_stage_requests)
        for version, weight in sorted(split.weights.items()):
            stats = self.slo.window(app_name, version, now - self.window_s, now)
            why = self._judge(stats) if weight > 0 and stats.requests >= needed else None
            confirmed = self._confirmed((app_name, version), app_name, version, now,
                                        stats if why else None)
            if confirmed is None:
                continue
            stats, why = confirmed, self._judge(confirmed) or why
            target = self._guard_target(app_name, version, last_good)
            if target is None:
                last = self._guard_alerted.get((app_name, version), -1e18)
                if now - last >= 10 * self.window_s:
                    self._guard_alerted[(app_name, version)] = now
                    self.port.alert(app, "critical", f"{app_name}: live v{version} breaches its "
                                    f"SLO ({why}) and no earlier good version is known",
                                    {"app": app_name, "model": model, "version": version})
                continue
            r = self.store.create_rollout(
                app=app_name, model=model, baseline=target, candidate=version,
                started_by="promotion-controller", source="guard",
                reason=f"production guard: live v{version} breached its SLO",
                status=RUNNING, history=[{"t": now, "event": "guard", "split":
                                          split.model_dump(mode="json")}], now=now)
            self._rollback(r, why=f"SLO breach of live v{version}: {why}",
                           actor="promotion-controller", stats=stats)
            return

    def _confirmed(self, key: tuple[str, str], app_name: str, version: str, now: float,
                   breaching: WindowStats | None) -> WindowStats | None:
        """The one rule for acting on a breach, in a rollout's stages and between rollouts: it
        must still hold for the traffic that arrived after it was first seen, over at least one
        whole window (two windows that do not overlap), so one slow moment on a busy node — a
        version's first requests, a pause — does not undo a version.

        Args:
            key: What is judged (app and version, or app and rollout).
            breaching: The window that breaches now; None when healthy (forgets a sighting).

        Returns:
            The window to roll back on, or None (healthy, a blip, or not confirmed yet). With
            fewer than ``promotion.min_stage_requests`` requests since the first sighting it
            waits, up to four windows, then acts on the breach it saw (no newer evidence).
        """
        if breaching is None:
            self._breaches.pop(key, None)
            return None
        first = self._breaches.setdefault(key, now)
        if now - first < self.window_s:
            return None
        since = self.slo.window(app_name, version, first, now)
        if since.requests >= max(1, self.cfg.promotion.min_stage_requests):
            self._breaches.pop(key, None)
            return since if self._judge(since) else None  # healthy since: a blip
        if now - first < 4 * self.window_s:
            return None
        self._breaches.pop(key, None)
        return breaching

    def _guard_target(self, app_name: str, version: str, last_good: str | None) -> str | None:
        """Where a breaching live version's traffic goes: the last good version, or — when
        the breaching version is the last good one — the production before its promotion."""
        if version != last_good:
            return last_good
        latest = self.store.latest(app_name)
        if latest is not None and latest.status == DONE and latest.candidate == version \
                and latest.baseline != version:
            return latest.baseline
        return None

    def _poll(self) -> None:
        for managed in self.store.apps():
            try:
                staging = self.port.staging_version(managed.model)
            except Exception:
                continue
            if staging is None or staging == managed.staging_seen:
                continue
            self.store.set_staging_seen(managed.app, staging, self.clock())
            if staging != managed.last_good and not self.store.active(managed.app):
                try:
                    self.start(managed.app, staging, actor="promotion-controller",
                               reason=f"registry alias staging → v{staging}",
                               source="registry-poll")
                except (UserError, NotFoundError):
                    pass

    def note_staging(self, app_name: str, version: str) -> None:
        """A webhook announced ``staging`` → ``version``: do not start it again on poll."""
        self.store.set_staging_seen(app_name, version, self.clock())

    def _count_served(self, r: Rollout, now: float) -> int:
        """Requests the candidate served in the current stage: the evidence a stage needs.

        Counted tick by tick, each interval well inside the SLO history, so a stage that
        lasts longer than that history (prod: 900 s steps, 240 s kept) is credited with its
        own requests only, not with what its replicas counted in earlier stages. After a
        controller restart the count starts at this process's first observation: less
        evidence, never more.
        """
        assert r.stage_started_at is not None
        rid, idx, since, served = self._stage_served.get(r.app, (-1, -1, 0.0, 0))
        if (rid, idx) != (r.id, r.stage_idx):
            since, served = max(r.stage_started_at, self._started_at), 0
        served += self.slo.window(r.app, r.candidate, since, now,
                                  unseen_from_zero=False).requests
        self._stage_served[r.app] = (r.id, r.stage_idx, now, served)  # one rollout per app
        return served

    def _stage_name(self, r: Rollout) -> str:
        if r.source == "guard":
            return "live"
        plan = promotion_plan(self.cfg, r.baseline, r.candidate)
        return plan[min(r.stage_idx, len(plan) - 1)].stage

    def _advance(self, r: Rollout) -> None:
        app, _model, _ = self._app(r.app)
        plan = promotion_plan(self.cfg, r.baseline, r.candidate)
        step = plan[r.stage_idx]
        now = self.clock()
        if r.applied_idx != r.stage_idx or (r.id not in self._verified
                                            and self.port.current_split(app) != step.split):
            self._apply_stage(r, app, step.stage, step.split)
            return
        self._verified.add(r.id)
        assert r.stage_started_at is not None
        stats = self.slo.widened(r.app, r.candidate, now, self.window_s, r.stage_started_at,
                                 self._min_window_requests)
        policy = self.cfg.promotion
        why = self._judge(stats)
        confirmed = self._confirmed((r.app, f"rollout {r.id}"), r.app, r.candidate, now,
                                    stats if why else None)
        if confirmed is not None:
            why = self._judge(confirmed) or why
            self._rollback(r, why=f"SLO breach of v{r.candidate} in {step.stage}: {why}",
                           actor="promotion-controller", stats=confirmed)
            return
        if why:
            return  # seen, not confirmed yet: the stage neither passes nor rolls back
        served = self._count_served(r, now)
        hold = 0.0 if (step.stage == SHADOW_STAGE and r.override_by) else step.hold_s
        held = now - r.stage_started_at
        # After a restart, judge only on a window this process has observed itself.
        observed = now - self._started_at >= self.window_s
        if held < max(hold, self.window_s) or not observed:
            return
        # No evidence, no pass: at 5 % of a quiet app's traffic a window can hold no canary
        # request at all, and an empty window breaches nothing.
        if served < policy.min_stage_requests:
            if not r.history or r.history[-1].get("event") != "waiting_for_traffic":
                r.history.append({"t": now, "event": "waiting_for_traffic", "stage": step.stage,
                                  "served": served, "needed": policy.min_stage_requests})
                self.store.save(r, now)
            return
        event: dict[str, Any] = {"t": now, "event": "stage_passed", "stage": step.stage,
                                 "held_s": round(held, 3), "window": stats.as_dict()}
        stage_gate = getattr(self.port, "stage_gate", None)
        gate = stage_gate(app, r.baseline, r.candidate, step.stage) if stage_gate else None
        if gate is not None:
            if not gate.passed:
                self._rollback(r, why=f"stage gate {gate.name} failed in {step.stage}: "
                               f"{gate.detail}", actor="promotion-controller", stats=stats)
                return
            event["gate"] = gate.model_dump()
        r.history.append(event)
        if r.stage_idx + 1 >= len(plan):
            self._complete(r)
        else:
            r.stage_idx += 1
            self.store.save(r, now)

    def _stable_for(self, r: Rollout) -> str:
        return r.baseline

    def _apply_stage(self, r: Rollout, app: AppConfig, stage: str, split: TrafficSplit) -> None:
        applying_from = self.clock()  # replicas may take the split from here on
        self.port.apply_split(app, split, stable=self._stable_for(r), actor="promotion-controller",
                              reason=f"promotion {r.baseline}→{r.candidate}: {stage}")
        now = self.clock()
        r.applied_idx = r.stage_idx
        r.stage_started_at = now
        self._verified.add(r.id)
        alias = "shadow" if stage == SHADOW_STAGE else (
            "production" if stage == PRODUCTION_STAGE else "canary")
        aliases: dict[str, str | None] = {a: None for a in STAGE_ALIASES}
        if alias != "production":
            aliases[alias] = r.candidate
        alias_error = self.port.set_aliases(r.model, aliases)
        r.history.append({"t": now, "event": "stage", "stage": stage, "applying_from":
                          applying_from, "split": split.model_dump(mode="json"),
                          "alias_error": alias_error})
        self.store.save(r, now)
        self.audit("promotion-controller", "deployment.promotion.step", r.app, reason=r.reason,
                   details={"rollout": r.id, "stage": stage, "candidate": r.candidate,
                            "split": split.model_dump(mode="json")})

    def _complete(self, r: Rollout) -> None:
        now = self.clock()
        alias_error = self.port.set_aliases(
            r.model, {"production": r.candidate, "shadow": None, "canary": None})
        r.status = DONE
        r.history.append({"t": now, "event": "done", "alias_error": alias_error})
        self.store.save(r, now)
        self.store.set_last_good(r.app, r.candidate, now)
        self.audit("promotion-controller", "deployment.promotion.complete", r.app,
                   reason=r.reason, details={"rollout": r.id, "production": r.candidate,
                                             "previous": r.baseline})

    def _rollback(self, r: Rollout, *, why: str, actor: str,
                  stats: WindowStats | None = None) -> dict[str, Any]:
        now = self.clock()
        app, _model, _ = self._app(r.app)
        target = r.baseline
        check = self.port.rollback_target_check(app, r.model, target)
        split = TrafficSplit(weights={target: 100.0})
        details: dict[str, Any] = {
            "detected_at": now,
            "rollout": r.id, "from": r.candidate, "to": target, "why": why,
            "stage": self._stage_name(r), "target_features": check.model_dump(),
            "window": stats.as_dict() if stats else None}
        if r.candidate != target:
            # Copy-on-write: report() iterates the app's set from other actor threads.
            self._blocked[r.app] = self._blocked.get(r.app, set()) | {r.candidate}
            self._block_times[(r.app, r.candidate)] = [now, None]
        try:
            self.port.apply_split(app, split, stable=target, actor=actor,
                                  reason=f"rollback to v{target}: {why}")
        except Exception as exc:
            details["error"] = f"{type(exc).__name__}: {exc}"
            self.audit(actor, "deployment.rollback", r.app, reason=why, details=details,
                       outcome="failed")
            r.history.append({"t": now, "event": "rollback_failed", **details})
            self.store.save(r, now)
            raise
        done = self.clock()
        details["alias_error"] = self.port.set_aliases(
            r.model, {"production": target, "shadow": None, "canary": None})
        details["alert"] = self.port.alert(
            app, "critical" if not check.passed else "warning",
            f"{r.app}: rolled back v{r.candidate} → v{target}: {why}",
            {"app": r.app, "model": r.model, "from_version": r.candidate,
             "to_version": target})
        details["rollback_s"] = round(done - now, 3)
        r.status = ROLLED_BACK
        r.history.append({"t": done, "event": "rolled_back", **details})
        self.store.save(r, done)
        self.store.set_last_good(r.app, target, done)
        self.audit(actor, "deployment.rollback", r.app, reason=why, details=details)
        return self._summary(r)

    def _summary(self, r: Rollout) -> dict[str, Any]:
        out = r.as_dict()
        out["stage"] = self._stage_name(r)
        return out
