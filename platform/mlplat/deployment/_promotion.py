"""The promotion schedule: shadow for a mandatory minimum, then canary steps up to 100 %.

The promotion controller (``_controller.py``) walks it; there is no other promotion path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlplat.contracts.v1 import TrafficSplit
from mlplat.errors import UserError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig

SHADOW_STAGE = "shadow"
PRODUCTION_STAGE = "production"

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
