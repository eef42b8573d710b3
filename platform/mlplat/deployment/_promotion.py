"""The promotion schedule: shadow for a mandatory minimum, then canary steps up to 100 %."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment._audit import AuditSink, audit_sink, audited
from mlplat.deployment._gates import evaluate_gates, gates_passed
from mlplat.errors import UserError

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig

SHADOW_STAGE = "shadow"
PRODUCTION_STAGE = "production"

TrafficSetter = Callable[..., None]
"""``(cfg, app, split, *, actor, reason) -> None``; ``set_traffic`` by default."""


@dataclass(frozen=True)
class PromotionStep:
    """One stage of a promotion: the split to apply and how long to hold it at least."""

    stage: str
    split: TrafficSplit
    hold_s: float


def promotion_plan(cfg: PlatformConfig, production: str, candidate: str) -> list[PromotionStep]:
    """The steps that take ``candidate`` from shadow to all traffic.

    Shadow (candidate mirrored, weight 0) for ``promotion_timing.shadow_min_s``, then one
    ``canary-<pct>`` step per ``promotion.canary_steps_pct`` for ``canary_step_s`` each; the
    last (100 %) is called ``production``. The old version stays loaded at weight 0 so a
    rollback is a weight change, not a model load.

    Raises:
        UserError: ``candidate`` is the production version.

    Example:
        >>> [s.stage for s in promotion_plan(cfg, "3", "4")]   # doctest: +SKIP
        ['shadow', 'canary-5', 'canary-25', 'canary-50', 'production']
    """
    if production == candidate:
        raise UserError(
            f"candidate version '{candidate}' is already the production version; "
            "promote a different version."
        )
    timing = cfg.active_profile().promotion_timing
    steps = [
        PromotionStep(
            SHADOW_STAGE,
            TrafficSplit(weights={production: 100.0, candidate: 0.0}, shadow=candidate),
            timing.shadow_min_s,
        )
    ]
    for pct in cfg.promotion.canary_steps_pct:
        stage = PRODUCTION_STAGE if pct >= 100 else f"canary-{pct}"
        split = TrafficSplit(weights={production: 100.0 - pct, candidate: float(pct)})
        steps.append(PromotionStep(stage, split, timing.canary_step_s))
    return steps


def _hold(step: PromotionStep, applied_at: float, clock: Callable[[], float],
          sleep: Callable[[float], None]) -> None:
    # Time spent in on_step (sending traffic) counts towards the hold.
    deadline = applied_at + step.hold_s
    while (remaining := deadline - clock()) > 0:
        sleep(remaining)


def run_promotion(
    cfg: PlatformConfig,
    app: AppConfig,
    production: str,
    candidate: str,
    *,
    actor: str,
    reason: str = "",
    candidate_model: Any | None = None,
    drift_share: float | None = None,
    on_step: Callable[[PromotionStep], None] | None = None,
    set_traffic: TrafficSetter | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    audit: AuditSink | None = None,
) -> list[PromotionStep]:
    """Gate ``candidate``, then walk it through ``promotion_plan``; roll back on any failure.

    Args:
        cfg: Platform config (promotion policy and timing).
        app: The deployed app.
        production: The version serving all traffic now.
        candidate: The version to promote.
        actor: Who promotes (audited).
        reason: Why (audited).
        candidate_model: The loaded candidate (``.metrics``, ``.card``, ``.feature_spec``);
            loaded from the experiment plane when omitted.
        drift_share: Reference-vs-recent drift share, if measured: adds the drift gate.
        on_step: Called after each split is applied (e.g. to send traffic); its time counts
            towards the step's hold.
        set_traffic: Applies a split; the real ``set_traffic`` by default.
        clock, sleep: Time sources (inject fakes in tests).
        audit: Audit sink; the governance plane's audit log by default.

    Returns:
        The steps applied, in order.

    Raises:
        UserError: a gate failed (nothing was changed; the message lists the failed gates).
        Exception: whatever a step raised, after traffic was rolled back to ``production``.

    Example:
        >>> run_promotion(cfg, app, "3", "4", actor="alice", reason="weekly retrain",
        ...               on_step=lambda s: print(s.stage))   # doctest: +SKIP
        shadow
        canary-5
        ...
    """
    sink = audit or audit_sink(cfg)
    if set_traffic is None:
        from mlplat.deployment._api import set_traffic as real_set_traffic

        set_traffic = real_set_traffic
    plan = promotion_plan(cfg, production, candidate)
    if candidate_model is None:
        from mlplat.experiment import load_model_version

        candidate_model = load_model_version(cfg, app.name, candidate)
    results = evaluate_gates(cfg, app, candidate_model, drift_share=drift_share)
    passed = gates_passed(results)
    sink(actor, "deployment.promotion.gates", app.name, reason=reason,
         details={"production": production, "candidate": candidate,
                  "gates": [r.model_dump() for r in results]},
         outcome="ok" if passed else "denied")
    if not passed:
        failed = "; ".join(f"{r.name}: {r.detail}" for r in results if not r.passed)
        raise UserError(
            f"version {candidate} of '{app.name}' failed its promotion gates — {failed}. "
            "Nothing was changed; fix the candidate and register a new version."
        )

    applied: list[PromotionStep] = []
    try:
        for step in plan:
            with audited(sink, actor=actor, action="deployment.promotion.step", target=app.name,
                         reason=reason,
                         details={"stage": step.stage, "split": step.split.model_dump(mode="json"),
                                  "hold_s": step.hold_s, "candidate": candidate}):
                set_traffic(cfg, app, step.split, actor=actor,
                            reason=f"promotion {production}→{candidate}: {step.stage}")
                applied.append(step)
                applied_at = clock()
                if on_step is not None:
                    on_step(step)
                _hold(step, applied_at, clock, sleep)
    except BaseException:
        # An interrupted promotion (a failed step, on_step raising, Ctrl-C) never leaves the
        # candidate with partial traffic: everything goes back to production.
        rollback = TrafficSplit(weights={production: 100.0, candidate: 0.0})
        with audited(sink, actor=actor, action="deployment.promotion.rollback",
                     target=app.name, reason=f"promotion of {candidate} did not complete",
                     details={"split": rollback.model_dump(mode="json"),
                              "last_stage": applied[-1].stage if applied else None}):
            set_traffic(cfg, app, rollback, actor=actor,
                        reason=f"rollback of promotion {production}→{candidate}")
        raise
    return applied
