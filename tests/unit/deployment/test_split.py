"""The traffic split: stable per key, proportional to the weights, exact at 0 and 100."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import SplitPicker, bucket_of, request_key
from mlplat.deployment._split import BUCKETS

versions = st.lists(st.text("0123456789abc", min_size=1, max_size=4), min_size=1, max_size=5,
                    unique=True)


@st.composite
def splits(draw: st.DrawFn) -> TrafficSplit:
    names = draw(versions)
    raw = draw(st.lists(st.integers(0, 100), min_size=len(names), max_size=len(names)))
    if sum(raw) == 0:
        raw[0] = 1
    total = sum(raw)
    weights = {n: 100.0 * r / total for n, r in zip(names, raw, strict=True)}
    return TrafficSplit(weights=weights)


@given(splits(), st.text(min_size=1, max_size=40))
def test_same_key_and_weights_give_the_same_version(split: TrafficSplit, key: str) -> None:
    first = SplitPicker(split).choose(key)
    # A fresh picker (another replica, a restart) agrees.
    assert SplitPicker(TrafficSplit.model_validate(split.model_dump())).choose(key) == first


@given(splits(), st.text(min_size=1, max_size=40))
def test_zero_weight_never_chosen_and_full_weight_always(split: TrafficSplit, key: str) -> None:
    chosen = SplitPicker(split).choose(key)
    assert split.weights[chosen] > 0
    for version, weight in split.weights.items():
        if weight == 100:
            assert chosen == version


@settings(max_examples=25, deadline=None)
@given(splits(), st.integers(0, 2**31))
def test_observed_share_tracks_the_weights(split: TrafficSplit, salt: int) -> None:
    n = 20_000
    picker = SplitPicker(split)
    counts = Counter(picker.choose(f"req-{salt}-{i}") for i in range(n))
    for version, weight in split.weights.items():
        share = 100.0 * counts[version] / n
        # 20k draws: binomial sd ≤ 0.36 pp; 2 pp is > 5 sd.
        assert abs(share - weight) < 2.0, (version, weight, share)
        if weight == 0:
            assert counts[version] == 0


def test_buckets_are_contiguous_in_sorted_version_order() -> None:
    picker = SplitPicker(TrafficSplit(weights={"2": 25, "1": 75}))
    assert picker.choose_bucket(0) == "1"
    assert picker.choose_bucket(int(BUCKETS * 0.75) - 1) == "1"
    assert picker.choose_bucket(int(BUCKETS * 0.75)) == "2"
    assert picker.choose_bucket(BUCKETS - 1) == "2"


def test_shadow_version_is_never_live() -> None:
    picker = SplitPicker(TrafficSplit(weights={"1": 100, "2": 0}, shadow="2"))
    assert {picker.choose(f"k{i}") for i in range(500)} == {"1"}


def test_request_key_prefers_request_id_then_entity_values() -> None:
    assert request_key({"account_id": 7}, ["account_id"], "r-1") == "r-1"
    assert request_key({"account_id": 7}, ["account_id"]) == "account_id=7"
    assert request_key({"b": 2, "a": 1}, ["a", "b"]) == "a=1|b=2"
    assert 0 <= bucket_of("anything") < BUCKETS
