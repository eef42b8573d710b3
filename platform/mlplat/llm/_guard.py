"""Automatic rollback of LLM canaries on the SLOs of ``slos.llm`` (platform.yaml).

``LLMSloGuard`` is the plain logic (a clock, no Ray): LLM router replicas push their cumulative
per-version counters with the split they apply; the guard differences them into fleet-wide
windows with the deployment plane's ``SloWindows`` and judges every canary — a live version
other than the stable one — with the plane's ``breach`` on error rate, TTFT p99 and
inter-token p99. A breach calls ``rollback(app, split_without_canary, why, window)``.

The guard keeps no state worth saving: the split lives in the Serve app's ``user_config`` and
the counters are re-pushed every ``slo_report_interval_s``, so a restarted guard judges again
after one window. ``LLMGuardActor`` is the thin detached actor around it; it also runs the
deployment plane's ``PromotionController`` for LLM apps (``_promotion.py``), state in its own
store, and leaves an app in a rollout to that controller.

Example:
    >>> guard = LLMSloGuard(cfg, rollback=lambda *a: None, clock=fake_clock)   # doctest: +SKIP
    >>> guard.report("llm", "replica-1", snapshot, split, stable="1")         # doctest: +SKIP
    >>> guard.tick()                                                           # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from mlplat.cluster import LLM_GUARD_ACTOR
from mlplat.deployment import ControllerCommands, SloWindows, TrafficSplit, WindowStats
from mlplat.llm._promotion import llm_breach

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig

"""Default name of the detached guard actor (namespace ``mlplat``)."""

Rollback = Callable[[str, TrafficSplit, str, WindowStats], None]
"""``(app, new_split, why, window)``: put the new split in force (audited)."""


def without(split: TrafficSplit, version: str, stable: str) -> TrafficSplit:
    """``split`` with ``version``'s weight given to ``stable`` (shadow kept unless it is it).

    Example:
        >>> without(TrafficSplit(weights={"1": 50, "2": 50}), "2", "1").weights
        {'1': 100.0, '2': 0.0}
    """
    weights = dict(split.weights)
    moved = weights.get(version, 0.0)
    weights[version] = 0.0
    weights[stable] = weights.get(stable, 0.0) + moved
    shadow = None if split.shadow == version else split.shadow
    return TrafficSplit(weights=weights, shadow=shadow)


class LLMSloGuard:
    """Judges LLM canaries per window and rolls back a breaching one (once per split).

    Args:
        cfg: Platform config (``slos.llm``, ``promotion_timing.evaluation_window_s``).
        rollback: Applies the rolled-back split; its exceptions are recorded, retried next tick.
        clock: Seconds (wall clock in the actor, fake in tests).
    """

    def __init__(self, cfg: PlatformConfig, rollback: Rollback, *,
                 clock: Callable[[], float] = time.time,
                 promoting: Callable[[str], bool] = lambda app: False) -> None:
        self.cfg = cfg
        self.slo = cfg.slos.llm
        self.window_s = cfg.active_profile().promotion_timing.evaluation_window_s
        self.windows = SloWindows(history_s=max(60.0, 4 * self.window_s))
        self._rollback = rollback
        self._promoting = promoting  # apps in a rollout: the promotion controller judges them
        self.clock = clock
        self._lock = threading.Lock()
        # app → (split json, stable, first seen at): a new split restarts its windows
        self._splits: dict[str, tuple[str, str, float]] = {}
        self._rolling_back: dict[str, set[str]] = {}
        # app → until when the guard leaves it alone after a rollout ended (see tick).
        self._quiet_until: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []

    def report(self, app: str, replica: str, snapshot: dict[str, Any],
               split: dict[str, Any], stable: str) -> None:
        """A replica's cumulative counters and the split (and stable version) it applies."""
        now = self.clock()
        key = TrafficSplit.model_validate(split).model_dump_json()
        with self._lock:
            seen = self._splits.get(app)
            if seen is None or seen[0] != key or seen[1] != stable:
                self._splits[app] = (key, stable, now)
        self.windows.report(app, replica, snapshot, now)

    def blocked(self, app: str) -> list[str]:
        """Versions of ``app`` whose rollback is under way: replicas learn them from the reply
        to their next push and stop answering with them before the split change reaches
        them."""
        with self._lock:
            return sorted(self._rolling_back.get(app, ()))

    def judge(self, app: str) -> list[tuple[str, str, WindowStats]]:
        """``(version, why, window)`` for every breaching canary of ``app`` now."""
        with self._lock:
            seen = self._splits.get(app)
        if seen is None:
            return []
        split, stable = TrafficSplit.model_validate_json(seen[0]), seen[1]
        windows = self.current_windows(app)
        out = []
        for version, weight in sorted(split.weights.items()):
            if weight <= 0 or version == stable:
                continue
            stats = windows[version]
            why = llm_breach(self.slo, stats)
            if why:
                out.append((version, why, stats))
        return out

    def current_windows(self, app: str) -> dict[str, WindowStats]:
        """Each version's window of ``app`` now, as ``judge`` sees it (empty: no split yet)."""
        with self._lock:
            seen = self._splits.get(app)
        if seen is None:
            return {}
        now = self.clock()
        # Widened until its p99s rest on min_samples generations (a trickle is judged too).
        return {v: self.windows.widened(app, v, now, self.window_s, seen[2],
                                        self.slo.min_samples)
                for v in TrafficSplit.model_validate_json(seen[0]).weights}

    def tick(self) -> list[dict[str, Any]]:
        """Judge every app; roll back each breaching canary. Returns this tick's events."""
        with self._lock:
            apps = list(self._splits)
        events = []
        for app in apps:
            if self._promoting(app):
                # The controller judges it. What the guard knew of its split is the rollout's,
                # and replicas may report a canary split for a moment after the rollout ended
                # (rolled back): forget it, and judge the app again only one window later, on
                # the split it then reports — never roll back what the controller just did.
                with self._lock:
                    self._splits.pop(app, None)
                    self._quiet_until[app] = self.clock() + self.window_s
                continue
            if self.clock() < self._quiet_until.get(app, 0.0):
                continue
            for version, why, stats in self.judge(app):
                with self._lock:
                    key, stable, _ = self._splits[app]
                new = without(TrafficSplit.model_validate_json(key), version, stable)
                event: dict[str, Any] = {"t": self.clock(), "app": app, "version": version,
                                         "to": new.model_dump(mode="json"),
                                         "why": f"SLO breach of v{version}: {why}",
                                         "window": stats.as_dict()}
                with self._lock:
                    self._rolling_back.setdefault(app, set()).add(version)
                try:
                    self._rollback(app, new, event["why"], stats)
                except Exception as exc:  # retried on the next tick while the breach holds
                    event["error"] = f"{type(exc).__name__}: {exc}"
                else:
                    with self._lock:  # the new split is in force: judge it afresh
                        self._splits[app] = (new.model_dump_json(), stable, self.clock())
                finally:  # in force (weight 0), or failed: the block has done its part
                    with self._lock:
                        self._rolling_back.get(app, set()).discard(version)
                event["done_at"] = self.clock()
                events.append(event)
        self.events.extend(events)
        del self.events[:-100]
        return events


class LLMGuardActor(ControllerCommands):
    """Ray actor shell: ticks the guard and the LLM promotion controller in a thread.

    A guard rollback is ``set_llm_traffic``, audited ``llm.rollback``. The controller methods
    (``start``, ``status``, ``override``, ``rollback``, ``register_app``) have the promotion
    controller actor's signatures, so ``mlplat.deployment.promote(..., controller=<guard>)``
    and ``mlplat deploy promote <app> N --controller <guard>`` drive LLM promotions.
    """

    def __init__(self, cfg: PlatformConfig, name: str = LLM_GUARD_ACTOR, tick_s: float = 0.2) -> None:
        from mlplat.audit import audit_sink
        from mlplat.config import SqliteTracking
        from mlplat.deployment import ControllerPort, PromotionController, PromotionStore
        from mlplat.llm._config import LLMAppConfig
        from mlplat.llm._promotion import LLMPort, llm_judge

        self._cfg = cfg
        self._name = name
        # LLMPort's methods take the LLMAppConfig the controller builds from app_type, where
        # ControllerPort (written for tabular apps) says AppConfig.
        from mlplat.llm._promotion import ShadowFleet

        port = cast("ControllerPort", LLMPort(cfg, shadow_comparisons=lambda app: (
            self._shadow.comparisons(app, time.time()))))
        self._controller = PromotionController(
            cfg, PromotionStore(str(cfg.local_path(f"deployment/{name}.db"))), port,
            audit_sink(cfg), judge=llm_judge(cfg), app_type=LLMAppConfig,
            min_window_requests=cfg.slos.llm.min_samples,
            poll_registry=isinstance(cfg.active_profile().tracking, SqliteTracking),
            guard_production=False)  # LLMSloGuard below judges LLM apps between rollouts
        self._guard = LLMSloGuard(cfg, self._apply, promoting=self._promoting)
        # The text gate's replicas age out with the guard's SLO windows.
        self._shadow = ShadowFleet(history_s=self._guard.windows.history_s)
        self._tick_s = tick_s
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="llm-slo-guard", daemon=True).start()

    def _promoting(self, app: str) -> bool:
        return bool(self._controller.store.active(app))

    def _apply(self, app: str, split: TrafficSplit, why: str, stats: WindowStats) -> None:
        from mlplat.llm._api import set_llm_traffic

        set_llm_traffic(self._cfg, app, split, actor=self._name, reason=why,
                        action="llm.rollback", details={"window": stats.as_dict()})

    def _loop(self) -> None:
        import logging

        while not self._stop.is_set():
            for part in (self._guard, self._controller):
                try:
                    part.tick()
                except Exception:  # keep guarding; events and rollouts record their errors
                    logging.getLogger(__name__).exception("LLM guard tick failed")
            self._stop.wait(self._tick_s)

    def report(self, app: str, replica: str, snapshot: dict[str, Any], split: dict[str, Any],
               stable: str, combined: dict[str, Any] | None = None,
               shadow: dict[str, dict[str, float]] | None = None) -> list[str]:
        """Live counters for the guard; live + shadow (``combined``) for the controller; the
        replica's shadow comparison totals (``shadow``) for the text gate.

        Returns:
            The versions of ``app`` the replica must stop answering with now (rolled back by
            the controller, or by the guard while its split change is under way).
        """
        self._guard.report(app, replica, snapshot, split, stable)
        if shadow is not None:
            self._shadow.report(app, replica, shadow, time.time())
        blocked = self._controller.report(app, replica, combined or snapshot)
        return sorted(set(blocked) | set(self._guard.blocked(app)))

    def unblock(self, app: str, versions: list[str]) -> None:
        """Weights set by hand give ``versions`` traffic again: stop diverting them."""
        self._controller.unblock(app, versions)

    def events(self) -> list[dict[str, Any]]:
        """The rollbacks done (or tried: ``error``) since the actor started."""
        return list(self._guard.events)

    def shadow_comparisons(self, app: str) -> dict[str, Any]:
        """The fleet's shadow comparisons of ``app``: what the text gate judges."""
        return self._shadow.comparisons(app, time.time())

    def windows(self, app: str) -> dict[str, Any]:
        """Each version's current window as the guard sees it."""
        return {v: w.as_dict() for v, w in self._guard.current_windows(app).items()}


def get_llm_guard(cfg: PlatformConfig, name: str = LLM_GUARD_ACTOR) -> Any:
    """The guard actor ``name`` (created if absent: detached, named, 0 CPU, restartable).

    Example:
        >>> ray.get(get_llm_guard(cfg).events.remote())   # doctest: +SKIP
    """
    from mlplat.cluster import platform_actor

    return platform_actor(cfg, LLMGuardActor, name, cfg, name, max_concurrency=8)
