from __future__ import annotations

from datetime import datetime

from pydantic import Field

from mlplat.contracts.v1._base import Contract


class FeatureViewRef(Contract):
    """One Feast feature view a model reads, with the features it takes from it."""

    name: str
    features: list[str] = Field(min_length=1)
    ttl_s: float = Field(gt=0, description="A feature row older than this at label time is null.")
    version: str = Field("", description="Content hash of the view definition, set by the data plane.")


class FeatureSpec(Contract):
    """What a model consumes: entity keys, feature views, request-time features and the label."""

    entity_keys: list[str] = Field(min_length=1)
    timestamp_column: str = "event_timestamp"
    feature_views: list[FeatureViewRef] = Field(min_length=1)
    request_features: list[str] = Field(
        default_factory=list, description="Features sent in the request body, not looked up."
    )
    label: str

    def feature_refs(self) -> list[str]:
        """Feast feature references, ``view:feature``."""
        return [f"{v.name}:{f}" for v in self.feature_views for f in v.features]

    def feature_names(self) -> list[str]:
        """Model input column names, in order: looked-up features then request features."""
        return [f for v in self.feature_views for f in v.features] + list(self.request_features)


class DatasetManifest(Contract):
    """Written next to every training dataset; the dataset's identity is ``content_sha256``."""

    path: str
    row_count: int = Field(ge=0)
    columns: dict[str, str] = Field(description="Column name → Arrow type.")
    feature_spec: FeatureSpec
    feature_view_versions: dict[str, str]
    source_paths: list[str]
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
