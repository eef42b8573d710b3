"""What every kind's router shares: the split in force and how a request's version is picked.

One ``SplitRouter`` per replica holds the ``RouterUserConfig`` (split, stable fallback, fault
knobs), picks a version per request key (``SplitPicker``), diverts versions the controller is
rolling back to the stable one, injects the configured faults, and keeps the per-version
counters the controller judges (``VersionCounters``) and the request / fallback / divert counts
``stats`` reports. A kind's router (``RouterCore`` for tabular models, the LLM router for
OpenAI requests) subclasses it and adds how a request is parsed, answered and shadowed.

Plain class, no Ray: unit tests drive it directly.

Example:
    >>> r = SplitRouter("fraud")
    >>> r.configure(r.validate({"model": "fraud", "split": {"weights": {"1": 90, "2": 10}}}))
    >>> r.route("account_id=7") in {"1", "2"}
    True
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment._slo import VersionCounters
from mlplat.deployment._split import SplitPicker
from mlplat.deployment._types import RouterUserConfig, VersionFault
from mlplat.errors import InfraError, NotFoundError, UserError


class InjectedFault(InfraError):
    """A failure the router raised on purpose (``user_config.faults``): the test / chaos knob
    that exercises fallback and rollback on a live app."""


def split_versions(split: TrafficSplit) -> set[str]:
    """Every version ``split`` names: the weighted ones (weight 0 included) and the shadow."""
    return set(split.weights) | ({split.shadow} if split.shadow else set())


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


class SplitRouter:
    """The split in force, per-request version choice, stable fallback and counters.

    Args:
        app_name: The app this router serves (for messages).
        rng: Randomness for fault injection.
    """

    label = "router"
    """What messages call it (``"LLM router"`` for the LLM kind)."""

    def __init__(self, app_name: str, *, rng: random.Random | None = None) -> None:
        self.app_name = app_name
        self._rng = rng or random.Random()
        self._config: RouterUserConfig | None = None
        self._picker: SplitPicker | None = None
        self.requests: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self.blocked: frozenset[str] = frozenset()
        self.diverted: Counter[str] = Counter()
        self.slo: dict[str, VersionCounters] = {}
        self.shadow_dropped = 0
        self.shadow_failed = 0

    # ------------------------------------------------------------------ configuration

    def validate(self, user_config: Mapping[str, Any] | RouterUserConfig) -> RouterUserConfig:
        """``user_config`` as a ``RouterUserConfig``.

        Raises:
            UserError: invalid config (pydantic's message names the field).
        """
        from pydantic import ValidationError

        try:
            return RouterUserConfig.model_validate(user_config)
        except ValidationError as exc:
            raise UserError(f"invalid {self.label} user_config for app "
                            f"'{self.app_name}': {exc}") from exc

    def configure(self, new: RouterUserConfig) -> None:
        """Put ``new`` in force (the kind's ``commit`` swaps its loaded versions first)."""
        self._config = new
        self._picker = SplitPicker(new.split)

    @property
    def config(self) -> RouterUserConfig | None:
        return self._config

    @property
    def split(self) -> TrafficSplit:
        """The split in force. Raises UserError before the first one."""
        if self._config is None:
            raise UserError(f"{self.label} '{self.app_name}' has no traffic split yet; "
                            "deploy one.")
        return self._config.split

    @property
    def model_name(self) -> str | None:
        return self._config.model if self._config else None

    def set_blocked(self, versions: Any) -> None:
        """Versions the controller is rolling back: their requests go to the stable version
        from now on, ahead of the split change reaching this replica."""
        self.blocked = frozenset(str(v) for v in versions or ())

    def stable_version(self) -> str:
        """The version that answers when the picked one fails: ``stable`` if the split names
        it (loaded, even at weight 0), else the live version with the most weight."""
        split = self.split
        stable = self._config.stable if self._config else None
        if stable and stable in split.weights:
            return stable
        return max(sorted(split.weights, key=_version_order), key=lambda v: split.weights[v])

    def fault_for(self, version: str) -> VersionFault | None:
        return self._config.faults.get(version) if self._config else None

    # ------------------------------------------------------------------ requests

    def route(self, key: str) -> str:
        """The version that answers the request keyed ``key``: the split's pick, or the stable
        version when the pick is being rolled back.

        Raises:
            NotFoundError: no split deployed yet (404).
        """
        if self._picker is None:
            raise NotFoundError(f"{self.label} '{self.app_name}' has no model versions "
                                "loaded yet; deploy a split.")
        version = self._picker.choose(key)
        if version in self.blocked:  # rolled back; the new split is on its way
            stable = self.stable_version()
            if stable not in self.blocked:
                self.diverted[version] += 1
                version = stable
        return version

    def inject(self, version: str, *, shadow: bool = False) -> float:
        """Apply the version's fault knob: raises ``InjectedFault`` for the configured share of
        calls; returns the delay (s) to add. A ``live_only`` fault spares shadow calls."""
        fault = self.fault_for(version)
        if fault is None or (shadow and fault.live_only):
            return 0.0
        if fault.error_rate > 0 and self._rng.random() < fault.error_rate:
            raise InjectedFault(f"injected fault on version {version} (user_config.faults)")
        return fault.delay_s

    def fall_back(self, failed: str, exc: BaseException) -> str:
        """The version that answers instead of ``failed``: the stable one (the failure counts
        against ``failed``). Re-raises ``exc`` when ``failed`` is the stable version."""
        stable = self.stable_version()
        if stable == failed:
            raise exc
        self.fallbacks[failed] += 1
        return stable

    def observe(self, version: str, latency_ms: float, ok: bool) -> None:
        """Count one live call of ``version`` (what the controller's SLO guard judges)."""
        self.counters(version).observe(latency_ms, ok)

    def counters(self, version: str) -> VersionCounters:
        return self.slo.setdefault(version, VersionCounters())

    # ------------------------------------------------------------------ reports

    def slo_snapshot(self) -> dict[str, Any]:
        """Cumulative live counters per version (what the controller differences)."""
        return {v: c.snapshot() for v, c in self.slo.items()}

    def routing_stats(self) -> dict[str, Any]:
        """The counts every kind reports: split, requests, fallbacks, diversions, SLO."""
        return {
            "app": self.app_name,
            "model": self.model_name,
            "split": self._config.split.model_dump(mode="json") if self._config else None,
            "stable": self.stable_version() if self._config else None,
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "fallbacks": dict(self.fallbacks),
            "blocked": sorted(self.blocked),
            "diverted": dict(self.diverted),
            "slo": self.slo_snapshot(),
            "faults": {v: f.model_dump() for v, f in self._config.faults.items()}
            if self._config else {},
        }
