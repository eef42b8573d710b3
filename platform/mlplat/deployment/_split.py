"""Weighted traffic split by a stable hash of the request key."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from mlplat.contracts.v1 import TrafficSplit

BUCKETS = 10_000
"""Hash buckets: weights resolve to 0.01 % of traffic."""


def bucket_of(key: str) -> int:
    """The bucket in ``[0, BUCKETS)`` a request key falls in; the same key always maps the same.

    A cryptographic digest (not Python's ``hash``, which is salted per process) so every replica
    and every restart agrees.

    Example:
        >>> bucket_of("req-1") == bucket_of("req-1")
        True
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def request_key(
    entity: Mapping[str, Any], entity_keys: Sequence[str], request_id: str | None = None
) -> str:
    """The key a request is split by: its ``request_id`` if given, else its entity key values.

    Keying by entity makes an entity sticky to one version while the weights hold still, so a
    caller retrying without a request id sees consistent answers.

    Example:
        >>> request_key({"account_id": 7}, ["account_id"])
        'account_id=7'
        >>> request_key({"account_id": 7}, ["account_id"], "abc")
        'abc'
    """
    if request_id:
        return request_id
    return "|".join(f"{k}={entity.get(k)}" for k in entity_keys)


class SplitPicker:
    """Picks the live version for a request key from a ``TrafficSplit``.

    Versions are laid out on the bucket line in sorted order with widths proportional to their
    weights, so the mapping depends only on the key and the weights. A version of weight 0 has
    no buckets and is never picked; the shadow version is never picked.

    Example:
        >>> picker = SplitPicker(TrafficSplit(weights={"1": 75, "2": 25}))
        >>> picker.choose("some-request") in {"1", "2"}
        True
        >>> SplitPicker(TrafficSplit(weights={"1": 100, "2": 0})).choose("x")
        '1'
    """

    def __init__(self, split: TrafficSplit) -> None:
        self.split = split
        self._versions: list[str] = []
        self._upper: list[int] = []
        cumulative = 0.0
        for version in sorted(split.weights):
            weight = split.weights[version]
            cumulative += weight
            if weight <= 0:
                continue
            upper = round(cumulative * BUCKETS / 100.0)
            if self._upper and upper <= self._upper[-1]:
                continue  # narrower than one bucket: below the split's resolution
            self._versions.append(version)
            self._upper.append(upper)
        # Float sums may land a hair under 100 %: the last live version owns the remainder.
        self._upper[-1] = BUCKETS

    @property
    def live_versions(self) -> list[str]:
        """Versions that receive any live traffic, sorted."""
        return list(self._versions)

    def choose_bucket(self, bucket: int) -> str:
        """The version owning ``bucket``."""
        return self._versions[bisect.bisect_right(self._upper, bucket)]

    def choose(self, key: str) -> str:
        """The version for request key ``key``."""
        return self.choose_bucket(bucket_of(key))
