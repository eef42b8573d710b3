"""The Feast side of the data plane: repo config from the active profile, apply, materialize.

An app's Feast repo (``apps/<app>/feature_repo``) holds a ``feature_store.yaml`` whose locations
are ``${MLPLAT_FEAST_*}`` placeholders and a ``features.py`` that builds its definitions from
app.yaml. mlplat fills the placeholders from the active profile, so the same repo works with
``feast apply`` on a laptop and against Redis in production.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import string
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from mlplat.apps import AppConfig, load_app
from mlplat.config import PlatformConfig, RedisOnlineStore, SqliteOnlineStore
from mlplat.errors import InfraError, NotFoundError, UserError, did_you_mean

if TYPE_CHECKING:
    from feast import Entity, FeatureStore, FeatureView
    from feast.repo_config import RepoConfig

ENV_REGISTRY = "MLPLAT_FEAST_REGISTRY"
ENV_ONLINE_STORE = "MLPLAT_FEAST_ONLINE_STORE"
ENV_RAW_DIR = "MLPLAT_FEAST_RAW_DIR"
FEATURE_STORE_YAML = "feature_store.yaml"
DEFINITIONS_FILE = "features.py"

# Importing features.py reads os.environ; serialise the temporary patch so two threads in one
# process (a driver building two datasets) never see each other's values.
_ENV_LOCK = threading.Lock()


def resolve_app(cfg: PlatformConfig, app: AppConfig | str) -> AppConfig:
    return app if isinstance(app, AppConfig) else load_app(app, cfg)


def raw_dir(cfg: PlatformConfig, app: AppConfig | str) -> str:
    """Folder (or URI) of the app's raw feature tables: ``<root>/raw/<app>``."""
    return f"{cfg.root()}/raw/{resolve_app(cfg, app).name}"


def feast_env(cfg: PlatformConfig, app: AppConfig | str) -> dict[str, str]:
    """Environment variables the app's Feast repo needs, derived from the active profile.

    Args:
        cfg: Platform config (its active profile picks the storage root and online store).
        app: The app, or its name.

    Returns:
        ``MLPLAT_FEAST_REGISTRY`` (``<root>/feast/<app>/registry.db``),
        ``MLPLAT_FEAST_ONLINE_STORE`` (the ``online_store`` block as a YAML flow mapping) and
        ``MLPLAT_FEAST_RAW_DIR`` (``<root>/raw/<app>``).

    Raises:
        UserError: the profile pairs a SQLite online store with a non-local root.

    Example:
        >>> env = feast_env(load_config(), "fraud")
        >>> json.loads(env["MLPLAT_FEAST_ONLINE_STORE"])["type"]
        'sqlite'
    """
    app = resolve_app(cfg, app)
    root = cfg.root()
    store = cfg.active_profile().online_store
    online: dict[str, str]
    if isinstance(store, SqliteOnlineStore):
        # An object-store root has no place for the SQLite file; offline work (build_dataset,
        # skew reports) still runs, and repo_config refuses the online store with a clear error.
        path = str(cfg.local_path(store.path)) if "://" not in root else ""
        online = {"type": "sqlite", "path": path}
    elif isinstance(store, RedisOnlineStore):
        online = {"type": "redis", "connection_string": store.connection_string}
    else:  # pragma: no cover - the config union admits nothing else
        raise UserError(f"Unsupported online store {store!r}.")
    registry = f"{root}/feast/{app.name}/registry.db"
    if "://" not in root:
        Path(registry).parent.mkdir(parents=True, exist_ok=True)
    return {
        ENV_REGISTRY: registry,
        # JSON is a YAML flow mapping, and quoting keeps paths with spaces or colons intact.
        ENV_ONLINE_STORE: json.dumps(online),
        ENV_RAW_DIR: raw_dir(cfg, app),
    }


def _repo(app: AppConfig) -> Path:
    repo = app.feature_repo
    if not (repo / FEATURE_STORE_YAML).is_file():
        raise UserError(
            f"App '{app.name}' has no {repo / FEATURE_STORE_YAML}. Every app keeps its Feast "
            "definitions in apps/<app>/feature_repo/ (see apps/fraud/feature_repo)."
        )
    return repo


def repo_config(cfg: PlatformConfig, app: AppConfig | str) -> RepoConfig:
    """The app's feature_store.yaml with its ``${MLPLAT_FEAST_*}`` placeholders filled in.

    Placeholders are filled from :func:`feast_env` without touching ``os.environ``, so several
    apps and profiles can be open in one process.

    Raises:
        UserError: the repo or its feature_store.yaml is missing or invalid.

    Example:
        >>> repo_config(load_config(), "fraud").online_store.type
        'sqlite'
    """
    from feast.repo_config import RepoConfig

    app = resolve_app(cfg, app)
    repo = _repo(app)
    path = repo / FEATURE_STORE_YAML
    env = feast_env(cfg, app)
    if json.loads(env[ENV_ONLINE_STORE]) == {"type": "sqlite", "path": ""}:
        raise UserError(
            f"Profile '{cfg.active_profile_name()}' pairs a SQLite online store with the "
            f"object-store root '{cfg.root()}'; SQLite needs a local root. Use a Redis online "
            "store in that profile (online_store: {type: redis, connection_string: ...})."
        )
    text = string.Template(path.read_text()).safe_substitute({**os.environ, **env})
    try:
        config = RepoConfig(**yaml.safe_load(text))
        config.online_store  # noqa: B018 - resolves the online store block, so errors surface here
    except Exception as exc:  # Feast raises pydantic and its own errors here
        if "Could not import module" in str(exc):
            kind = json.loads(feast_env(cfg, app)[ENV_ONLINE_STORE])["type"]
            raise UserError(
                f"{path}: the '{kind}' online store of profile '{cfg.active_profile_name()}' "
                f"needs an extra package: pip install 'feast[{kind}]' ({exc})."
            ) from exc
        raise UserError(f"{path}: invalid Feast config: {exc}") from exc
    config.repo_path = repo
    return config


def feature_store(cfg: PlatformConfig, app: AppConfig | str) -> FeatureStore:
    """A ``feast.FeatureStore`` for the app's repo, configured from the active profile.

    Raises:
        UserError: the repo or its feature_store.yaml is missing or invalid.

    Example:
        >>> store = feature_store(load_config(), "fraud")
        >>> store.project
        'fraud'
    """
    from feast import FeatureStore

    config = repo_config(cfg, app)
    return FeatureStore(repo_path=str(config.repo_path), config=config)


@contextlib.contextmanager
def _patched_env(env: dict[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _import_definitions(cfg: PlatformConfig, app: AppConfig) -> ModuleType:
    path = _repo(app) / DEFINITIONS_FILE
    if not path.is_file():
        raise UserError(f"App '{app.name}' has no {path}; put its Feast definitions there.")
    spec = importlib.util.spec_from_file_location(f"_mlplat_feature_repo_{app.name}", path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-.py paths
        raise UserError(f"Cannot import {path}.")
    module = importlib.util.module_from_spec(spec)
    # The file reads its locations from the same variables `feast apply` would see.
    with _patched_env(feast_env(cfg, app)):
        spec.loader.exec_module(module)
    return module


def load_definitions(
    cfg: PlatformConfig, app: AppConfig | str
) -> tuple[list[Entity], dict[str, FeatureView]]:
    """Entities and feature views (by name) that the app's ``features.py`` defines."""
    from feast import Entity, FeatureView

    app = resolve_app(cfg, app)
    module = _import_definitions(cfg, app)
    entities: list[Entity] = []
    views: dict[str, FeatureView] = {}
    for obj in vars(module).values():
        if isinstance(obj, Entity) and all(obj is not e for e in entities):
            entities.append(obj)
        elif isinstance(obj, FeatureView):
            views[obj.name] = obj
    return entities, views


def check_views(app: AppConfig, views: dict[str, FeatureView]) -> None:
    """Every view and feature app.yaml names exists in the Feast definitions, each name once.

    Raises:
        NotFoundError: an unknown view or feature (with the nearest defined name).
        UserError: two views of the app provide a feature of the same name.
    """
    owner: dict[str, str] = {}
    for ref in app.features.feature_views:
        for f in ref.features:
            if f in owner and owner[f] != ref.name:
                raise UserError(
                    f"Feature '{f}' is listed by both feature view '{owner[f]}' and "
                    f"'{ref.name}' in {app.manifest}; a dataset column can hold only "
                    "one of them. Rename the feature in one view (e.g. "
                    f"'{ref.name}__{f}') or drop it from one of the views."
                )
            owner[f] = ref.name
    for ref in app.features.feature_views:
        if ref.name not in views:
            raise NotFoundError(
                f"Unknown feature view '{ref.name}' in {app.manifest}."
                f"{did_you_mean(ref.name, views)} Views defined in "
                f"{app.feature_repo / DEFINITIONS_FILE}: {sorted(views)}."
            )
        have = [f.name for f in views[ref.name].features]
        missing = [f for f in ref.features if f not in have]
        if missing:
            raise NotFoundError(
                f"Feature view '{ref.name}' has no feature(s) {missing}"
                f"{did_you_mean(missing[0], have)} It defines {have}; fix the app file or "
                f"{app.feature_repo / DEFINITIONS_FILE}."
            )


def view_version(view: FeatureView) -> str:
    """Content hash of a view's definition (not its data, not where its files live).

    Covers name, join keys, feature names and types, TTL and the source's timestamp columns
    and file name, so moving the storage root keeps the version while changing a TTL does not.

    Example:
        >>> _, views = load_definitions(cfg, "fraud")
        >>> len(view_version(views["account_profile"]))
        16
    """
    source = view.batch_source
    definition: dict[str, Any] = {
        "name": view.name,
        "join_keys": sorted(view.join_keys),
        "features": [[f.name, str(f.dtype)] for f in view.features],
        "ttl_s": view.ttl.total_seconds() if view.ttl else 0,
        "timestamp_field": getattr(source, "timestamp_field", ""),
        "created_timestamp_column": getattr(source, "created_timestamp_column", ""),
        "source_file": os.path.basename(getattr(source, "path", "") or ""),
    }
    blob = json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def apply_features(cfg: PlatformConfig, app: AppConfig | str) -> list[str]:
    """Register the app's entities and feature views in its Feast registry (``feast apply``).

    Views that are in the registry but no longer defined are removed, as ``feast apply`` does.

    Returns:
        Names of the applied feature views, in app.yaml order.

    Raises:
        NotFoundError: app.yaml names a view or feature the definitions lack.
        InfraError: the registry or online store could not be written.

    Example:
        >>> apply_features(load_config(), "fraud")
        ['account_profile', 'account_txn_stats']
    """
    app = resolve_app(cfg, app)
    entities, views = load_definitions(cfg, app)
    check_views(app, views)
    store = feature_store(cfg, app)
    try:
        stale: list[Any] = [v for v in store.list_feature_views() if v.name not in views]
        store.apply([*entities, *views.values()], objects_to_delete=stale, partial=not stale)
    except OSError as exc:
        raise InfraError(f"Feast apply for app '{app.name}' failed: {exc}") from exc
    order = [ref.name for ref in app.features.feature_views]
    return order + sorted(set(views) - set(order))


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise UserError(
            f"{name}={value.isoformat()} is a naive datetime; pass a timezone-aware one, "
            "e.g. datetime.now(timezone.utc)."
        )


def materialize(
    cfg: PlatformConfig, app: AppConfig | str, end: datetime, start: datetime | None = None
) -> dict[str, int]:
    """Load feature values into the online store, up to ``end``.

    For every entity, the row written is the one the offline join would pick as of ``end``:
    greatest event time, then greatest created time, then values (see docs/contracts/data.md).
    Feast's own materialization sorts by created time and then re-sorts by event time with an
    unstable sort, so among same-timestamp corrections it serves an arbitrary one — a
    training/serving skew this function avoids. Feast's registry records each interval, so
    ``feast materialize-incremental`` and this function continue from each other.

    Args:
        cfg: Platform config.
        app: The app, or its name.
        end: Load rows with event time at or before this (tz-aware).
        start: Load rows from here (tz-aware). None: incremental, from where the previous
            materialization of each view stopped (or ``end - ttl`` the first time).

    Returns:
        Entities written per feature view.

    Raises:
        UserError: a naive datetime, ``start >= end``, or views not applied yet.
        InfraError: a source could not be read or the online store not written.

    Example:
        >>> materialize(load_config(), "fraud", end=datetime.now(timezone.utc))
        {'account_profile': 400, 'account_txn_stats': 391}
    """
    _require_aware("end", end)
    _require_aware("start", start)
    if start is not None and start >= end:
        raise UserError(f"start ({start.isoformat()}) must be before end ({end.isoformat()}).")
    app = resolve_app(cfg, app)
    store = feature_store(cfg, app)
    names = [ref.name for ref in app.features.feature_views]
    applied = {v.name: v for v in store.list_feature_views()}
    missing = [n for n in names if n not in applied]
    if missing:
        raise UserError(
            f"Feature views {missing} of app '{app.name}' are not applied yet; run "
            f"mlplat.data.apply_features(cfg, '{app.name}') (or `mlplat features apply "
            f"{app.name}`) first."
        )
    written: dict[str, int] = {}
    for name in names:
        view = applied[name]
        since = start or view.most_recent_end_time or (end - (view.ttl or timedelta(weeks=52)))
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        rows = latest_rows(view, since, end)
        try:
            if len(rows):
                store.write_to_online_store(name, rows, allow_registry_cache=False)
            store.registry.apply_materialization(view, store.project, since, end)
        except OSError as exc:
            raise InfraError(f"Materializing '{name}' of app '{app.name}' failed: {exc}") from exc
        except Exception as exc:  # redis and sqlite errors share no base class
            if "onnect" in str(exc):
                raise InfraError(
                    f"Materializing '{name}' of app '{app.name}' failed: {exc}"
                ) from exc
            raise
        written[name] = len(rows)
    return written


def latest_rows(
    view: FeatureView, start: datetime, end: datetime, keys: list[str] | None = None
) -> pd.DataFrame:
    """Per entity, the view row with event time in ``[start, end]`` the offline join would pick.

    ``keys`` defaults to the view's join keys (known once the view is applied).

    Example:
        >>> latest_rows(views["account_profile"], end - timedelta(days=90), end).columns[:2]
        Index(['account_id', 'event_timestamp'], dtype='object')
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from mlplat.data._storage import resolve

    source: Any = view.batch_source  # a FileSource (checked by build_dataset's plan)
    ts, created = source.timestamp_field, source.created_timestamp_column or None
    keys = list(keys or view.join_keys)
    if not keys:
        raise UserError(f"Feature view '{view.name}' has no join keys yet; apply it first.")
    features = [f.name for f in view.features]
    fs, path = resolve(source.path)
    try:
        table = pads.dataset(path, format="parquet", filesystem=fs).to_table(
            columns=list(dict.fromkeys([*keys, ts, *([created] if created else []), *features])),
            filter=(pc.field(ts) >= start) & (pc.field(ts) <= end),
        )
    except (OSError, ValueError) as exc:
        raise InfraError(f"Reading the source of '{view.name}' ({source.path}) failed: {exc}") from exc
    df = table.to_pandas()
    order = [*keys, ts, *([created] if created else []), *[f for f in features if f not in keys]]
    df = df.sort_values(order, kind="stable", na_position="first")
    return df.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
