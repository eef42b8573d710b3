"""The promotion schedule the controller walks: shadow for its minimum, then canary steps."""

from __future__ import annotations

import pytest

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import PromotionStep, promotion_plan
from mlplat.errors import UserError


def test_plan_follows_the_policy_and_profile_timing(platform_config) -> None:
    plan = promotion_plan(platform_config, "3", "4")
    timing = platform_config.active_profile().promotion_timing
    pcts = platform_config.promotion.canary_steps_pct
    assert [s.stage for s in plan] == ["shadow", *[f"canary-{p}" for p in pcts[:-1]],
                                       "production"]
    assert plan[0] == PromotionStep("shadow", TrafficSplit(weights={"3": 100, "4": 0},
                                                           shadow="4"), timing.shadow_min_s)
    assert [s.split.weights["4"] for s in plan[1:]] == [float(p) for p in pcts]
    assert all(s.hold_s == timing.canary_step_s for s in plan[1:])
    assert plan[-1].split.weights == {"3": 0.0, "4": 100.0}
    with pytest.raises(UserError, match="already the production version"):
        promotion_plan(platform_config, "4", "4")


def test_prod_profile_holds_longer(platform_config, monkeypatch) -> None:
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    plan = promotion_plan(platform_config, "3", "4")
    assert plan[0].hold_s == platform_config.profiles["prod"].promotion_timing.shadow_min_s
