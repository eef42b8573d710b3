"""``SplitRouter``: the rules every kind's router follows (tabular ``RouterCore`` and the LLM
router both are one), checked on the base class and on both kinds."""

from __future__ import annotations

import random

import pytest

from mlplat.deployment import InjectedFault, RouterCore, SplitRouter
from mlplat.errors import NotFoundError, UserError


def _kinds() -> list[type[SplitRouter]]:
    from mlplat.llm import LLMRouter

    return [SplitRouter, RouterCore, LLMRouter]


def test_both_kinds_are_the_one_split_router() -> None:
    assert all(issubclass(k, SplitRouter) for k in _kinds())
    for name in ("route", "stable_version", "fall_back", "inject", "set_blocked", "validate"):
        assert all(getattr(k, name) is getattr(SplitRouter, name) for k in _kinds()), name


def _configured(**extra: object) -> SplitRouter:
    r = SplitRouter("fraud", rng=random.Random(0))
    r.configure(r.validate({"model": "fraud", "split": {"weights": {"1": 90, "2": 10, "3": 0}},
                            **extra}))
    return r


def test_route_is_the_split_and_diverts_a_blocked_version_to_stable() -> None:
    r = _configured(stable="1")
    keys = [f"k{i}" for i in range(400)]
    picked = {k: r.route(k) for k in keys}
    assert set(picked.values()) == {"1", "2"}  # weight 0 is never chosen
    r.set_blocked(["2"])
    assert {r.route(k) for k in keys} == {"1"}
    assert r.diverted["2"] == sum(v == "2" for v in picked.values())


def test_stable_is_the_named_version_even_at_weight_0_else_the_heaviest() -> None:
    assert _configured().stable_version() == "1"
    assert _configured(stable="3").stable_version() == "3"  # loaded, at weight 0
    assert _configured(stable="7").stable_version() == "1"  # not in the split


def test_fall_back_counts_against_the_failed_version_and_stable_has_none() -> None:
    r = _configured(stable="1")
    err = InjectedFault("boom")
    assert r.fall_back("2", err) == "1" and r.fallbacks["2"] == 1
    with pytest.raises(InjectedFault):
        r.fall_back("1", err)


def test_inject_fails_its_share_and_live_only_spares_shadow_calls() -> None:
    r = _configured(faults={"2": {"error_rate": 1.0, "live_only": True},
                            "1": {"delay_s": 0.25}})
    with pytest.raises(InjectedFault, match="version 2"):
        r.inject("2")
    assert r.inject("2", shadow=True) == 0.0
    assert r.inject("1") == 0.25 and r.inject("3") == 0.0


def test_unconfigured_and_invalid_say_what_to_do() -> None:
    r = SplitRouter("fraud")
    with pytest.raises(NotFoundError, match="deploy a split"):
        r.route("k")
    with pytest.raises(UserError, match="no traffic split yet"):
        _ = r.split
    with pytest.raises(UserError, match="weights must sum to 100"):
        r.validate({"model": "fraud", "split": {"weights": {"1": 50}}})
