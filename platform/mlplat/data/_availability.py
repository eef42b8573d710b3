"""Feature availability: can a model version still get every feature it was trained on?

A rollback to an older version, or a promotion gate, must not put a model in front of traffic
whose features are gone. A version needs each feature view and feature of its
``feature_spec`` (stored with the version) to be

* defined in the app's Feast registry (applied, with the feature in its schema), and
* retained offline for at least ``data.feature_retention_days`` (platform.yaml): the view's
  ``retention_days`` tag (the owning team's statement of how long its source is kept) is at
  least that, or — for a view without the tag — its source's oldest row is at least that old.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import pyarrow.dataset as pads
from pydantic import BaseModel, Field, computed_field

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import FeatureSpec
from mlplat.data._feast import feature_store, resolve_app
from mlplat.data._storage import resolve
from mlplat.errors import MlplatError, NotFoundError

if TYPE_CHECKING:
    from feast import FeatureView

RETENTION_TAG = "retention_days"


class FeatureAvailability(BaseModel):
    """Result of :func:`check_features`: what a model version needs and what is missing."""

    model: str
    version: str
    app: str
    retention_days: int = Field(description="Required retention (data.feature_retention_days).")
    checked: list[str] = Field(description="'view.feature' of every feature checked.")
    missing: list[str] = Field(
        default_factory=list, description="One line per problem: 'view[.feature]: reason'."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when every feature is defined and retained."""
        return not self.missing


def _oldest(view: FeatureView) -> datetime | None:
    source: Any = view.batch_source
    fs, path = resolve(source.path)
    table = pads.dataset(path, format="parquet", filesystem=fs).to_table(
        columns=[source.timestamp_field]
    )
    if table.num_rows == 0:
        return None
    value = pc.min(table.column(source.timestamp_field)).as_py()
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _retention_problem(view: FeatureView, required_days: int, now: datetime) -> str | None:
    tag = (view.tags or {}).get(RETENTION_TAG)
    if tag is not None:
        try:
            days = float(tag)
        except ValueError:
            return f"tag {RETENTION_TAG}='{tag}' is not a number of days"
        if days < required_days:
            return (
                f"retained {days:g} days ({RETENTION_TAG} tag) but the platform requires "
                f"{required_days} (data.feature_retention_days); keep the source longer and "
                "raise the tag"
            )
        return None
    path = getattr(view.batch_source, "path", None)
    try:
        oldest = _oldest(view)
    except (OSError, ValueError, AttributeError) as exc:
        return f"offline source {path} is unreadable: {exc}"
    if oldest is None:
        return f"offline source {path} has no rows"
    if oldest > now - timedelta(days=required_days):
        return (
            f"offline data starts {oldest.isoformat()}, less than {required_days} days back, "
            f"and the view has no '{RETENTION_TAG}' tag promising to keep it that long"
        )
    return None


def check_feature_spec(
    cfg: PlatformConfig,
    app: AppConfig | str,
    spec: FeatureSpec,
    *,
    model: str = "",
    version: str = "",
    now: datetime | None = None,
) -> FeatureAvailability:
    """Check a feature spec against the app's Feast registry and offline sources.

    Example:
        >>> check_feature_spec(cfg, "fraud", load_app("fraud", cfg).features).ok
        True
    """
    app = resolve_app(cfg, app)
    now = now or datetime.now(UTC)
    required = cfg.data.feature_retention_days
    store = feature_store(cfg, app)
    registry = {v.name: v for v in store.list_feature_views(allow_cache=False)}
    checked: list[str] = []
    missing: list[str] = []
    for ref in spec.feature_views:
        checked += [f"{ref.name}.{f}" for f in ref.features]
        view = registry.get(ref.name)
        if view is None:
            missing.append(
                f"{ref.name}: not defined in the Feast registry of app '{app.name}' "
                f"(defined: {sorted(registry)})"
            )
            continue
        have = {f.name for f in view.features}
        missing += [
            f"{ref.name}.{f}: not a feature of the registered view (it has {sorted(have)})"
            for f in ref.features
            if f not in have
        ]
        problem = _retention_problem(view, required, now)
        if problem:
            missing.append(f"{ref.name}: {problem}")
    return FeatureAvailability(
        model=model,
        version=version,
        app=app.name,
        retention_days=required,
        checked=checked,
        missing=missing,
    )


def _app_serving(cfg: PlatformConfig, spec: FeatureSpec) -> AppConfig | None:
    """The one app whose app.yaml lists every view of ``spec`` (e.g. for a model 'fraud-it-3')."""
    from mlplat.apps import list_apps, load_app

    wanted = {v.name for v in spec.feature_views}
    matches = []
    for name in list_apps(cfg):
        try:
            candidate = load_app(name, cfg)
        except (MlplatError, ValueError):  # another app's broken app.yaml is not this check's
            continue
        if wanted <= {v.name for v in candidate.features.feature_views}:
            matches.append(candidate)
    return matches[0] if len(matches) == 1 else None


def check_features(
    cfg: PlatformConfig,
    model: str,
    version: str,
    *,
    app: AppConfig | str | None = None,
    now: datetime | None = None,
) -> FeatureAvailability:
    """Is every feature a registered model version needs still defined and retained?

    The version's feature spec is read from its verified model card in the registry.

    Args:
        cfg: Platform config (``data.feature_retention_days``, the Feast registry).
        model: Registered model name.
        version: Its version.
        app: The app whose Feast registry serves the model; defaults to the app named like
            the model, else the one app whose app.yaml lists all the version's views.
        now: Reference time of the retention check (tz-aware); defaults to now.

    Returns:
        ``.ok`` and ``.missing`` (one line per missing view or feature, with the reason).

    Raises:
        NotFoundError: unknown model, version or app.

    Example:
        >>> check_features(load_config(), "fraud", "3").ok
        True
    """
    from mlplat.experiment import get_model_card

    card = get_model_card(cfg, model, version)
    try:
        resolved = resolve_app(cfg, app if app is not None else model)
    except NotFoundError as exc:
        found = None if app is not None else _app_serving(cfg, card.feature_spec)
        if found is None:
            raise NotFoundError(
                f"{exc} Model '{model}' is not named like an app and no app defines all its "
                "feature views; pass app= (CLI: --app)."
            ) from exc
        resolved = found
    return check_feature_spec(
        cfg, resolved, card.feature_spec, model=model, version=str(version), now=now
    )
