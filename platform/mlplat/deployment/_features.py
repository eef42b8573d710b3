"""Is every feature a version needs still available? Checked before promotion and rollback.

Order of sources: an in-memory lookup that can list its columns (tests, laptops); the data
plane's ``mlplat.data.check_features(cfg, model, version)`` when that plane provides it; else
the app's Feast registry (``feature_store(cfg, app).list_feature_views()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.contracts.v1 import FeatureSpec, GateResult

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig


def _interpret(result: Any) -> list[str] | None:
    """The data plane's answer as a list of missing refs (None: could not tell)."""
    if isinstance(result, bool):
        return [] if result else ["(data plane reported missing features)"]
    if isinstance(result, list | tuple | set):
        return sorted(str(x) for x in result)
    missing = getattr(result, "missing", None)
    if missing is not None:
        return sorted(str(x) for x in missing)
    ok = getattr(result, "ok", None)
    if isinstance(ok, bool):
        return [] if ok else ["(data plane reported missing features)"]
    return None


def missing_features(cfg: PlatformConfig, app: AppConfig, model: str, version: str,
                     spec: FeatureSpec, lookup: Any = None) -> tuple[list[str], str]:
    """Feature refs of ``spec`` that are no longer available, and which source said so.

    Example:
        >>> missing_features(cfg, app, "fraud", "3", spec)   # doctest: +SKIP
        ([], 'feast registry')
    """
    wanted = spec.feature_refs()
    columns = getattr(lookup, "rows", None)
    if columns is not None:  # InMemoryFeatureLookup: the table is the truth
        have = {k for row in columns for k in row}
        return sorted(r for r in wanted if r.split(":", 1)[1] not in have), "in-memory lookup"
    try:
        import mlplat.data as data_plane
    except ImportError:  # pragma: no cover - the data plane ships with mlplat
        data_plane = None  # type: ignore[assignment]
    check = getattr(data_plane, "check_features", None)
    if check is not None:
        # The app itself, not its name: the controller may serve apps from another folder.
        answer = _interpret(check(cfg, model, version, app=app))
        if answer is not None:
            return answer, "mlplat.data.check_features"
    from mlplat.data import feature_store

    store = feature_store(cfg, app)
    available = {f"{v.name}:{f.name}" for v in store.list_feature_views() for f in v.features}
    return sorted(r for r in wanted if r not in available), "feast registry"


def features_gate(cfg: PlatformConfig, app: AppConfig, model: str, version: str,
                  spec: FeatureSpec | None, lookup: Any = None) -> GateResult:
    """Gate ``features``: every feature in the version's feature spec is still available."""
    if spec is None:
        return GateResult(name="features", passed=False,
                          detail="candidate carries no feature spec to check.")
    try:
        missing, source = missing_features(cfg, app, model, version, spec, lookup)
    except Exception as exc:
        return GateResult(name="features", passed=False,
                          detail=f"could not check feature availability: "
                          f"{type(exc).__name__}: {exc}")
    if missing:
        return GateResult(name="features", passed=False,
                          detail=f"features no longer available ({source}): {missing}")
    return GateResult(name="features", passed=True,
                      detail=f"all {len(spec.feature_refs())} looked-up features available "
                      f"({source})")
