"""The small protocols the router is built around, and the router's ``user_config`` schema.

The router never imports the experiment or data plane at module import time: it is handed a
``ModelLoader`` and a ``FeatureLookupFactory`` (defaults resolve to those planes lazily, inside
the replica), so it can be unit-tested with in-memory stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from mlplat.contracts.v1 import FeatureSpec, ModelCard, TrafficSplit

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig


@runtime_checkable
class ServedModel(Protocol):
    """What the router needs from a loaded model version (the experiment plane's LoadedModel).

    ``preprocessor`` is optional: when present, its numeric/categorical columns let the router
    reject a string sent for a numeric feature with a 400 instead of failing inside the model.
    """

    # Read-only properties, so a dataclass with a plain ``card: ModelCard`` field conforms.
    @property
    def feature_spec(self) -> FeatureSpec: ...

    @property
    def card(self) -> ModelCard | None: ...

    @property
    def metrics(self) -> dict[str, float]: ...

    def predict_proba(self, rows: list[dict[str, Any]]) -> list[float]:
        """Scores in [0, 1], one per row."""
        ...


ModelLoader = Callable[[str, str], ServedModel]
"""``(model, version) -> ServedModel``. Must be picklable: it travels to every replica."""


@runtime_checkable
class FeatureLookup(Protocol):
    """Online feature reads (the data plane's OnlineFeatureClient)."""

    def get(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One dict per entity: a value, or None, for every looked-up feature."""
        ...


FeatureLookupFactory = Callable[["PlatformConfig", "AppConfig"], FeatureLookup]
"""``(cfg, app) -> FeatureLookup``, called once inside each replica. Must be picklable."""

DriftSink = Callable[[str, str, list[dict[str, Any]], list[float], list[str | None]], bool]
"""``(model, version, rows, scores) -> delivered``. False means the monitor is not there."""


class RouterTuning(BaseModel):
    """Buffer sizes of the router's off-path work; the defaults suit a 1-CPU replica.

    These bound memory and background work per replica; they are not SLOs or policy, so they
    live with the router rather than in platform.yaml. Override per app through ``user_config``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shadow_max_in_flight: int = Field(
        default=4, ge=1, description="Shadow calls running at once; beyond this a copy is dropped."
    )
    shadow_buffer_size: int = Field(
        default=1000, ge=1, description="Most recent live/shadow comparisons kept for inspection."
    )
    drift_queue_size: int = Field(
        default=10_000, ge=1, description="Drift samples waiting to be sent; beyond this, dropped."
    )
    drift_batch_size: int = Field(default=256, ge=1, description="Samples per call to the monitor.")
    drift_flush_interval_s: float = Field(
        default=1.0, gt=0, description="How often queued drift samples are sent to the monitor."
    )
    slo_report_interval_s: float = Field(
        default=0.5, gt=0,
        description="How often per-version SLO counters are pushed to the promotion controller.",
    )


class VersionFault(BaseModel):
    """Fault injection for one version — a **test / chaos-engineering knob**, not a feature.

    The router makes a share of the version's calls fail (or slow) so that rollback, the
    stable-version fallback and shadow isolation can be exercised on a live app. Leave
    ``faults`` empty in production configs; every change to it is audited like any split change.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of calls that fail.")
    delay_s: float = Field(default=0.0, ge=0, le=60, description="Added latency per call.")
    live_only: bool = Field(default=False,
                            description="Spare the version's shadow calls (fail it only live).")


class RouterUserConfig(BaseModel):
    """The Serve ``user_config`` of the router deployment: changing it never restarts a replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="Registered model name the versions belong to.")
    split: TrafficSplit
    tuning: RouterTuning = Field(default=RouterTuning(), description="Off-path buffer sizes.")
    stable: str | None = Field(
        default=None,
        description="Version that answers when the picked version fails (a canary's fallback); "
        "defaults to the live version with the most weight.",
    )
    faults: dict[str, VersionFault] = Field(
        default_factory=dict,
        description="Per-version fault injection (tests/chaos only); empty in production.",
    )
    issued_at: float | None = Field(
        default=None,
        description="When the change was made (unix seconds; set by deploy / set_traffic). "
        "Orders racing changes: a replica running a later one means an earlier one lost.",
    )


class ExperimentPlaneLoader:
    """The default ``ModelLoader``: the experiment plane's registry, imported inside the replica.

    Example:
        >>> loader = ExperimentPlaneLoader(cfg)   # doctest: +SKIP
        >>> loader("fraud", "3").predict_proba([row])  # doctest: +SKIP
    """

    def __init__(self, cfg: PlatformConfig) -> None:
        self.cfg = cfg

    def __repr__(self) -> str:
        return "ExperimentPlaneLoader()"

    def __call__(self, model: str, version: str) -> ServedModel:
        from mlplat.experiment import load_model_version

        return load_model_version(self.cfg, model, version)


def online_feature_lookup(cfg: PlatformConfig, app: AppConfig) -> FeatureLookup:
    """The default ``FeatureLookupFactory``: the data plane's serving client (online store
    read once per request batch, served vectors sampled into the skew log off the request path)."""
    from mlplat.data import serving_feature_client

    return serving_feature_client(cfg, app)  # type: ignore[no-any-return]
