"""The serving path's feature client: one online read per request batch, and a log of what it served.

A Serve replica builds one :class:`ServingFeatureClient` and calls :meth:`get` once per batch
of requests. The read is :class:`~mlplat.data._online.OnlineFeatureClient`'s (one
``online_read`` per feature view for the whole batch); the exact values returned — after any
TTL expiry — are offered to a :class:`~mlplat.data._featurelog.FeatureLogger`, which samples
them (``data.feature_log_sample_rate`` in platform.yaml) and writes them from its own thread.
``mlplat data skew-report`` later recomputes the same vectors offline and compares.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.data._feast import resolve_app
from mlplat.data._featurelog import FeatureLogger, log_schema, log_uri
from mlplat.data._online import OnlineFeatureClient


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ServingFeatureClient:
    """Online features for the request path, with sampled off-path logging for skew reports.

    Args:
        cfg: Platform config: online store, storage root (where the log goes) and
            ``data.feature_log_sample_rate``.
        app: The app, or its name.
        sample_rate: Overrides ``data.feature_log_sample_rate`` (0 turns logging off).
        clock: "Now" for TTLs and the logged request time; defaults to the wall clock.
        log_dir: Overrides the log location ``<root>/feature_log/<app>``.
        rng: Random source of the sampling.

    Example:
        >>> client = ServingFeatureClient(load_config(), "fraud")
        >>> client.get([{"account_id": 100001}, {"account_id": 100002}])[0]["credit_limit"]
        1900.0
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        app: AppConfig | str,
        *,
        sample_rate: float | None = None,
        clock: Callable[[], datetime] = _utc_now,
        log_dir: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.app = resolve_app(cfg, app)
        self._clock = clock
        self.online = OnlineFeatureClient(cfg, self.app, clock=clock)
        keys, features = self.online.arrow_fields()
        rate = cfg.data.feature_log_sample_rate if sample_rate is None else sample_rate
        self.log = FeatureLogger(
            log_dir or log_uri(cfg.root(), self.app.name),
            log_schema(keys, self.app.features.timestamp_column, features),
            self.app.features.timestamp_column,
            rate,
            rng=rng,
        )

    @property
    def feature_names(self) -> list[str]:
        """Feature names every result row carries, in app.yaml order."""
        return self.online.feature_names

    def get(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Feature vectors for a batch of entities (see ``OnlineFeatureClient.get``), logged.

        Raises:
            UserError: an entity row lacks a key or has a value of the wrong type.
            InfraError: the online store could not be read.
        """
        now = self._clock()
        rows = self.online.get(entities, now=now)
        keys = self.online.join_keys
        self.log.offer(now, [{k: e[k] for k in keys} for e in entities], rows)
        return rows


def serving_feature_client(cfg: PlatformConfig, app: AppConfig | str) -> ServingFeatureClient:
    """The feature lookup a Serve replica of ``app`` uses (a ``FeatureLookupFactory``).

    Example:
        >>> lookup = serving_feature_client(load_config(), "fraud")
        >>> lookup.get([{"account_id": 100001}])[0].keys() >= {"credit_limit"}
        True
    """
    return ServingFeatureClient(cfg, app)
