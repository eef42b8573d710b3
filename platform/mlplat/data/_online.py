"""Online feature lookups on the request path.

The client talks to the Feast online store through Feast's ``OnlineStore.online_read`` backend
interface rather than ``FeatureStore.get_online_features``: the latter rebuilds request context
and a columnar response on every call, which costs about four times the read itself (measured
~0.8 ms vs ~0.2 ms p50 for one entity on SQLite). Everything that does not depend on the request
(views, entity types, the store connection) is resolved once in the constructor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mlplat.apps import AppConfig
from mlplat.config import PlatformConfig
from mlplat.data._feast import feature_store, resolve_app
from mlplat.errors import InfraError, UserError

if TYPE_CHECKING:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

# ValueType name → the ValueProto field holding it, for entity keys.
_ENTITY_FIELDS = {
    "INT64": "int64_val",
    "INT32": "int32_val",
    "STRING": "string_val",
    "BYTES": "bytes_val",
    "BOOL": "bool_val",
    "DOUBLE": "double_val",
    "FLOAT": "float_val",
}

# The same fields as Arrow types, for the served-feature log.
_ENTITY_ARROW: dict[str, pa.DataType] = {
    "int64_val": pa.int64(),
    "int32_val": pa.int32(),
    "string_val": pa.string(),
    "bytes_val": pa.binary(),
    "bool_val": pa.bool_(),
    "double_val": pa.float64(),
    "float_val": pa.float32(),
}


def value_to_python(value: Value | None) -> Any:
    """A Feast ``ValueProto`` as a plain Python value (None for unset / null)."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    raw = getattr(value, kind)
    return list(raw.val) if kind.endswith("_list_val") else raw


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OnlineFeatureClient:
    """Reads the latest feature values of entities from the app's online store.

    Construct once (it resolves the registry and opens the store) and call :meth:`get` many
    times; it is safe to share between threads of one process (a Serve replica).

    Args:
        cfg: Platform config; the active profile picks SQLite or Redis.
        app: The app, or its name.
        clock: Returns "now" (tz-aware); values older than the view's TTL at that time are
            reported as None. Defaults to the wall clock.

    Raises:
        UserError: a view of app.yaml is not applied to the registry yet.

    Example:
        >>> client = OnlineFeatureClient(load_config(), "fraud")
        >>> client.get([{"account_id": 100001}])[0]["credit_limit"]
        1900.0
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        app: AppConfig | str,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        from feast.errors import FeatureViewNotFoundException
        from feast.infra.online_stores.helpers import get_online_store_from_config

        self._app = resolve_app(cfg, app)
        spec = self._app.features
        store = feature_store(cfg, self._app)
        self._config = store.config
        self._clock = clock
        self._join_keys = list(spec.entity_keys)
        try:
            self._views = [
                (store.get_feature_view(ref.name), list(ref.features), timedelta(seconds=ref.ttl_s))
                for ref in spec.feature_views
            ]
        except FeatureViewNotFoundException as exc:
            raise UserError(
                f"{exc} in the registry of app '{self._app.name}'; run "
                f"mlplat.data.apply_features(cfg, '{self._app.name}') and materialize first."
            ) from exc
        self._fields = self._entity_fields(store)
        self._feature_names = [f for _, feats, _ in self._views for f in feats]
        self._online = get_online_store_from_config(self._config.online_store)
        # One SQLite connection serves every thread; sqlite3 cursors must not interleave.
        self._lock: threading.Lock | None = (
            threading.Lock() if self._config.online_store.type == "sqlite" else None
        )

    def _entity_fields(self, store: Any) -> dict[str, str]:
        fields: dict[str, str] = {}
        for entity in store.list_entities():
            for key in entity.join_keys if hasattr(entity, "join_keys") else [entity.join_key]:
                fields[key] = _ENTITY_FIELDS.get(entity.value_type.name, "string_val")
        missing = [k for k in self._join_keys if k not in fields]
        if missing:
            raise UserError(
                f"Entity key(s) {missing} of app '{self._app.name}' have no Feast entity in the "
                "registry; define them in features.py and apply."
            )
        return fields

    @property
    def feature_names(self) -> list[str]:
        """Feature names every result row carries, in app.yaml order."""
        return list(self._feature_names)

    def _entity_key(self, row: dict[str, Any]) -> EntityKey:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        values = []
        for key in self._join_keys:
            if key not in row or row[key] is None:
                raise UserError(
                    f"Entity row {row!r} has no value for entity key '{key}'; app "
                    f"'{self._app.name}' looks features up by {self._join_keys}."
                )
            values.append(Value(**{self._fields[key]: row[key]}))
        return EntityKey(join_keys=self._join_keys, entity_values=values)

    @property
    def join_keys(self) -> list[str]:
        """The app's entity keys, in order."""
        return list(self._join_keys)

    def arrow_fields(self) -> tuple[list[pa.Field], list[pa.Field]]:
        """Arrow fields of the entity keys and of every feature (types from the registry)."""
        from feast.type_map import feast_value_type_to_pa

        keys = [pa.field(k, _ENTITY_ARROW[self._fields[k]]) for k in self._join_keys]
        features = []
        for view, names, _ in self._views:
            types = {f.name: f.dtype for f in view.features}
            for name in names:
                features.append(pa.field(name, feast_value_type_to_pa(types[name].to_value_type())))
        return keys, features

    def get(
        self, entities: list[dict[str, Any]], *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Latest feature values for each entity row: one store read per view for the batch.

        Args:
            entities: One dict per entity with a value for every entity key, e.g.
                ``[{"account_id": 100001}]``. Other keys are ignored.
            now: The time TTLs are judged at (tz-aware); defaults to the client's clock.

        Returns:
            One dict per input row, in order, mapping every feature of the app's feature views
            to its value, or None when the entity has no row in the store or the row is older
            than the view's TTL.

        Raises:
            UserError: an entity row lacks an entity key or has a value of the wrong type.
            InfraError: the online store could not be read.

        Example:
            >>> client.get([{"account_id": 100001}, {"account_id": -1}])[1]["txn_count_1h"] is None
            True
        """
        if not entities:
            return []
        try:
            keys = [self._entity_key(row) for row in entities]
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(
                f"Entity rows {entities!r} have a value of the wrong type for "
                f"{self._join_keys} ({exc}); use the type the Feast entity declares."
            ) from exc
        now = now or self._clock()
        out: list[dict[str, Any]] = [dict.fromkeys(self._feature_names) for _ in entities]
        for view, features, ttl in self._views:
            rows = self._read(view, keys, features)
            oldest = now - ttl
            for result, (ts, values) in zip(out, rows, strict=True):
                if values is None or ts is None or ts < oldest:
                    continue  # missing or expired: the features stay None
                for name in features:
                    result[name] = value_to_python(values.get(name))
        return out

    def _read(self, view: Any, keys: list[EntityKey], features: list[str]) -> list[Any]:
        # A copy each call: Feast's Redis store appends its "_ts:<view>" key to the list it is
        # given, so passing ours would grow every later HMGET by one field per request.
        try:
            if self._lock is None:
                return self._online.online_read(self._config, view, keys, list(features))
            with self._lock:
                return self._online.online_read(self._config, view, keys, list(features))
        except Exception as exc:  # sqlite3 and redis errors share no base class
            raise InfraError(
                f"Reading feature view '{view.name}' of app '{self._app.name}' from the "
                f"{self._config.online_store.type} online store failed: {exc}"
            ) from exc
