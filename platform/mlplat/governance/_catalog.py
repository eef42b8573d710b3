"""The model catalog: one searchable row per registered model (the 100-model problem).

The index is a SQLite file rebuilt from the sources of truth — the MLflow registry (versions,
aliases, cards), the apps' app.yaml, platform.yaml (SLOs), the audit log (traffic changes) and,
when this process is connected to Ray, the live router split, the cost meter and the drift
monitor. It is a cache: deleting it loses nothing, ``refresh_catalog`` rebuilds it. Whatever a
source cannot tell is stored as ``unknown`` (never guessed).

Search syntax: ``field:value`` terms (``team``, ``owner``, ``stage``, ``drift``, ``model``,
``version``, ``feature``; ``value*`` is a prefix) and free words (full-text over name,
description, owner, team, features), all ANDed: ``team:risk stage:production card fraud``.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, NotFoundError, UserError, did_you_mean

STAGES = ("production", "canary", "shadow", "staging")
"""MLflow aliases that are stages, most advanced first."""
SEARCH_FIELDS = ("team", "owner", "stage", "drift", "model", "version", "feature")
UNKNOWN = "unknown"


class CatalogEntry(BaseModel):
    """Everything a platform user needs to know about one model, in one row.

    Example:
        >>> catalog.get("fraud").stages
        {'production': '3', 'canary': '4'}
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    team: str = UNKNOWN
    owner: str = UNKNOWN
    description: str = ""
    latest_version: str | None = Field(None, description="Highest registered version.")
    stage: str = Field("registered", description="Most advanced stage any version holds.")
    stages: dict[str, str] = Field(default_factory=dict, description="stage alias → version.")
    input_schema: dict[str, Any] = Field(default_factory=dict,
                                         description="Entity keys, features, request features.")
    output_schema: dict[str, Any] = Field(default_factory=dict)
    slos: dict[str, Any] = Field(default_factory=dict, description="From platform.yaml/app.yaml.")
    traffic_split: dict[str, float] | None = Field(None, description="version → percent.")
    shadow_version: str | None = None
    traffic_source: str = Field(UNKNOWN, description="live (router), audit (last recorded "
                                "change) or unknown.")
    cost_per_inference_usd: float | None = Field(None, description="None: unknown.")
    drift_status: str = Field(UNKNOWN, description="ok, warning, critical or unknown.")
    card_sha256: str | None = None
    links: dict[str, str] = Field(default_factory=dict, description="card, lineage, http and, "
                                  "when the monitor has one, the latest Evidently drift report.")
    refreshed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


# --------------------------------------------------------------------------- the index


def default_catalog_path(cfg: PlatformConfig) -> Path:
    """``<root>/catalog/catalog.db`` for a local root; a temp-folder cache otherwise."""
    root = cfg.root()
    if "://" in root:
        return Path(tempfile.gettempdir()) / "mlplat-catalog" / f"{cfg.active_profile_name()}.db"
    return cfg.local_path("catalog/catalog.db")


class Catalog:
    """The SQLite index behind ``mlplat catalog search`` and the HTTP endpoint.

    Args:
        path: Index file (created on demand).

    Example:
        >>> cat = Catalog(default_catalog_path(cfg))
        >>> [e.model for e in cat.search("team:risk stage:production")]
        ['fraud']
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript("""
                CREATE TABLE IF NOT EXISTS models (
                    model TEXT PRIMARY KEY, team TEXT, owner TEXT, stage TEXT, drift TEXT,
                    version TEXT, doc TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS models_team ON models(team);
                CREATE INDEX IF NOT EXISTS models_owner ON models(owner);
                CREATE INDEX IF NOT EXISTS models_drift ON models(drift);
                CREATE TABLE IF NOT EXISTS model_stages (
                    stage TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
                    PRIMARY KEY (stage, model));
                CREATE TABLE IF NOT EXISTS model_features (
                    feature TEXT NOT NULL, model TEXT NOT NULL, PRIMARY KEY (feature, model));
                CREATE VIRTUAL TABLE IF NOT EXISTS models_fts USING fts5(
                    model UNINDEXED, body, tokenize = 'unicode61 tokenchars ''-_''');
            """)
        except sqlite3.Error as exc:
            raise InfraError(f"Cannot open the model catalog index at {self.path}: {exc}. "
                             "It is a cache: delete it and run `mlplat catalog refresh`.") from exc

    def upsert(self, entries: Iterable[CatalogEntry]) -> int:
        """Insert or replace entries (one transaction); returns how many."""
        n = 0
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for e in entries:
                    self._delete(e.model)
                    c.execute("INSERT INTO models VALUES (?,?,?,?,?,?,?)",
                              (e.model, e.team, e.owner, e.stage, e.drift_status,
                               e.latest_version, e.model_dump_json()))
                    c.executemany("INSERT INTO model_stages VALUES (?,?,?)",
                                  [(s, e.model, v) for s, v in e.stages.items()])
                    feats = set(e.input_schema.get("features", [])) | set(
                        e.input_schema.get("request_features", []))
                    c.executemany("INSERT INTO model_features VALUES (?,?)",
                                  [(f, e.model) for f in sorted(feats)])
                    text = " ".join([e.model, e.team, e.owner, e.description, *sorted(feats)])
                    c.execute("INSERT INTO models_fts (model, body) VALUES (?, ?)",
                              (e.model, text))
                    n += 1
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        return n

    def _delete(self, model: str) -> None:
        c = self._conn
        c.execute("DELETE FROM models WHERE model=?", (model,))
        c.execute("DELETE FROM model_stages WHERE model=?", (model,))
        c.execute("DELETE FROM model_features WHERE model=?", (model,))
        c.execute("DELETE FROM models_fts WHERE model=?", (model,))

    def remove_missing(self, keep: set[str]) -> int:
        """Drop entries of models no longer in the registry."""
        with self._lock:
            gone = [m for (m,) in self._conn.execute("SELECT model FROM models") if m not in keep]
            for m in gone:
                self._delete(m)
        return len(gone)

    def get(self, model: str) -> CatalogEntry:
        """One model's entry.

        Raises:
            NotFoundError: not in the index (the message suggests the nearest names).
        """
        with self._lock:
            row = self._conn.execute("SELECT doc FROM models WHERE model=?", (model,)).fetchone()
            if row is None:
                names = [m for (m,) in self._conn.execute("SELECT model FROM models")]
        if row is None:
            raise NotFoundError(f"No model '{model}' in the catalog.{did_you_mean(model, names)} "
                                "Run `mlplat catalog refresh` if it was registered just now.")
        return CatalogEntry.model_validate_json(row[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM models").fetchone()[0])

    def search(self, query: str = "", limit: int = 100) -> list[CatalogEntry]:
        """Entries matching every term of ``query``, by model name.

        Raises:
            UserError: an unknown ``field:`` or an unbalanced quote (the message says which).

        Example:
            >>> [e.model for e in cat.search('team:risk "card fraud"')]
            ['fraud']
        """
        sql, args = compile_query(query)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY m.model LIMIT ?", (*args, limit)).fetchall()
        return [CatalogEntry.model_validate_json(r[0]) for r in rows]


def _like(value: str) -> tuple[str, str]:
    if value.endswith("*"):
        escaped = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "LIKE ? ESCAPE '\\'", escaped + "%"
    return "= ?", value


def compile_query(query: str) -> tuple[str, list[Any]]:
    """Translate a search string into SQL over the index (every lookup uses an index).

    Example:
        >>> compile_query("team:risk")[1]
        ['risk']
    """
    try:
        terms = shlex.split(query)
    except ValueError as exc:
        raise UserError(f"Cannot parse catalog query {query!r}: {exc}. Close the quote.") from exc
    where: list[str] = []
    args: list[Any] = []
    words: list[str] = []
    for term in terms:
        field, sep, value = term.partition(":")
        if not sep:
            words.append(term)
            continue
        if field not in SEARCH_FIELDS:
            raise UserError(
                f"Unknown catalog field '{field}' in {term!r}.{did_you_mean(field, SEARCH_FIELDS)} "
                f"Fields: {', '.join(SEARCH_FIELDS)} (e.g. team:risk stage:production)."
            )
        if not value:
            raise UserError(f"Catalog term {term!r} has no value; write e.g. {field}:risk.")
        op, arg = _like(value)
        if field == "stage":
            if value == "registered":
                where.append("m.model NOT IN (SELECT model FROM model_stages)")
                continue
            where.append(f"m.model IN (SELECT model FROM model_stages WHERE stage {op})")
        elif field == "feature":
            where.append(f"m.model IN (SELECT model FROM model_features WHERE feature {op})")
        else:
            column = {"drift": "drift", "version": "version"}.get(field, field)
            where.append(f"m.{column} {op}")
        args.append(arg)
    if words:
        # Each word is a quoted FTS5 prefix token, so user text is never FTS syntax.
        match = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        where.append("m.model IN (SELECT model FROM models_fts WHERE models_fts MATCH ?)")
        args.append(match)
    sql = "SELECT m.doc FROM models m" + (" WHERE " + " AND ".join(where) if where else "")
    return sql, args


# --------------------------------------------------------------------------- building entries


def _stage_of(aliases: dict[str, str]) -> str:
    return next((s for s in STAGES if s in aliases), "registered")


def _recorded_split(events: list[Any]) -> tuple[dict[str, float] | None, str | None]:
    """The last split a successful deploy / traffic change / promotion step recorded."""
    for e in reversed(events):
        if e.outcome != "ok":
            continue
        d = e.details
        split = d.get("to") or d.get("split")
        if isinstance(split, dict) and isinstance(split.get("weights"), dict):
            return ({str(k): float(v) for k, v in split["weights"].items()},
                    split.get("shadow"))
        if e.action == "deployment.undeploy":
            return None, None
    return None, None


def _live(cfg: PlatformConfig, model: str, app: Any, version: str | None) -> dict[str, Any]:
    """Split, cost and drift from the running cluster; empty when not connected (best effort)."""
    out: dict[str, Any] = {}
    try:
        import ray

        if not ray.is_initialized():
            return out
    except ImportError:
        return out
    if app is not None:
        try:
            from mlplat.deployment import current_split

            split = current_split(cfg, app)
            out["split"] = (dict(split.weights), split.shadow)
        except Exception:  # not deployed, or Serve is down: the split stays unknown
            pass
    try:
        from mlplat.cluster import COST_METER_ACTOR

        meter = ray.get_actor(COST_METER_ACTOR, namespace="mlplat")
        report: Any = ray.get(meter.report.remote(collect=False), timeout=5)
        if model in report.per_inference_usd:
            out["cost"] = float(report.per_inference_usd[model])
    except Exception:  # no meter running: cost stays unknown
        pass
    if version is not None:
        try:
            from mlplat.cluster import DRIFT_MONITOR_ACTOR
            from mlplat.monitoring import NAMESPACE

            monitor = ray.get_actor(DRIFT_MONITOR_ACTOR, namespace=NAMESPACE)
            drift: Any = ray.get(monitor.latest_report.remote(model, version), timeout=5)
            if drift is not None:
                share = float(drift.share_drifted)
                out["drift"] = ("critical" if share >= cfg.monitoring.drift_share_critical else
                                "warning" if share >= cfg.monitoring.drift_share_warning else "ok")
                if drift.evidently_report:  # the full Evidently report of that window
                    out["drift_report"] = f"{drift.evidently_report}.html"
        except Exception:  # no monitor running: drift stays unknown
            pass
    return out


def _stored_costs(cfg: PlatformConfig) -> dict[str, float]:
    """Per-inference cost from the cost meter's SQLite store, read without Ray (best effort)."""
    try:
        from mlplat.cluster import COST_METER_ACTOR
        from mlplat.governance._cost import CostMeter, CostStore

        if "://" in cfg.root():
            return {}
        path = Path(cfg.root()) / "governance" / f"{COST_METER_ACTOR}.db"
        if not path.is_file():
            return {}
        report = CostMeter(cfg, store=CostStore(path)).report()
        return {k: float(v) for k, v in report.per_inference_usd.items()}
    except Exception:  # the meter's store is its own business; cost then stays unknown
        return {}


def build_entry(cfg: PlatformConfig, model: str, *, versions: list[dict[str, Any]],
                aliases: dict[str, str], registry_tags: dict[str, str],
                audit_events: list[Any] | None = None, card: Any = None,
                live: dict[str, Any] | None = None) -> CatalogEntry:
    """Assemble one entry from what the sources returned (pure: no I/O).

    Example:
        >>> build_entry(cfg, "fraud", versions=[{"version": "1", "tags": {}}], aliases={},
        ...             registry_tags={"team": "risk"}).team
        'risk'
    """
    from mlplat.apps import list_apps, load_app

    app = load_app(model, cfg) if model in list_apps(cfg) else None
    latest = versions[-1] if versions else None
    version = str(latest["version"]) if latest else None
    vtags = dict(latest.get("tags", {})) if latest else {}
    spec = card.feature_spec if card is not None else (app.features if app else None)
    team = (card.team if card is not None else app.team if app else
            registry_tags.get("team") or vtags.get("team") or UNKNOWN)
    owner = (card.owner if card is not None else app.owner if app else
             registry_tags.get("owner") or UNKNOWN)
    slos: dict[str, Any] = {
        "p99_ms_max": cfg.promotion.rollback_max_p99_ms,
        "error_rate_max": cfg.promotion.rollback_max_error_rate,
        "rollback_after_breach_s": cfg.slos.deployment.rollback_after_breach_s,
        "drift_report_after_window_s": cfg.slos.monitoring.drift_report_after_window_s,
    }
    if app is not None:
        slos.update({"gate_metric": app.serving.gate_metric, "gate_min": app.serving.gate_min})
    live = live or {}
    split, shadow = live.get("split", (None, None))
    source = "live" if split else UNKNOWN
    if not split and audit_events:
        split, shadow = _recorded_split(audit_events)
        source = "audit" if split else UNKNOWN
    lineage = f"mlplat lineage show {model}:{version}" if version else ""
    inputs: dict[str, Any] = ({"entity_keys": list(spec.entity_keys),
                               "features": [f for v in spec.feature_views for f in v.features],
                               "request_features": list(spec.request_features)} if spec else {})
    outputs: dict[str, Any] = ({"score": f"P({spec.label} = 1), float in [0, 1]",
                                "label": spec.label} if spec else {})
    try:  # the exported model's own signature, when the version carries one
        signature = json.loads(vtags["mlplat.signature"])
        inputs["signature"] = signature["inputs"]
        outputs["signature"] = signature["outputs"]
    except (KeyError, TypeError, ValueError):
        pass
    return CatalogEntry(
        model=model, team=team, owner=owner,
        description=(card.description if card is not None else
                     app.description if app else ""),
        latest_version=version,
        stage=_stage_of(aliases),
        stages={s: v for s, v in aliases.items() if s in STAGES},
        input_schema=inputs,
        output_schema=outputs,
        slos=slos,
        traffic_split=split, shadow_version=shadow, traffic_source=source,
        cost_per_inference_usd=live.get("cost"),
        drift_status=live.get("drift", UNKNOWN),
        card_sha256=vtags.get("card_sha256"),
        links={"card": f"models:/{model}/{version}#model_card" if version else "",
               "lineage": lineage, "http": f"/catalog/models/{model}",
               **({"drift_report": live["drift_report"]} if live.get("drift_report") else {})},
    )


def refresh_catalog(cfg: PlatformConfig, models: Iterable[str] | None = None,
                    catalog: Catalog | None = None,
                    on_model: Callable[[str], None] | None = None) -> int:
    """Rebuild index entries from the registry (all models, or the ones named).

    Call it on demand (``mlplat catalog refresh``) and right after registering a version.
    Connected to Ray (``ray.init`` done), it also reads the live split, cost and drift.

    Returns:
        How many entries were written.

    Raises:
        NotFoundError: a named model is not registered.
        InfraError: the registry cannot be reached.

    Example:
        >>> refresh_catalog(cfg, ["fraud"])
        1
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlplat.apps import list_apps, load_app
    from mlplat.experiment import get_model_card, list_versions, tracking_uri

    cat = catalog or Catalog(default_catalog_path(cfg))
    uri = tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        registered = {}
        token = None
        while True:
            page = client.search_registered_models(max_results=1000, page_token=token)
            registered.update({m.name: m for m in page})
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        raise InfraError(f"Cannot list registered models at {uri}: {exc}") from exc
    wanted = list(models) if models is not None else sorted(registered)
    for name in wanted:
        if name not in registered:
            raise NotFoundError(f"No registered model '{name}'."
                                f"{did_you_mean(name, registered)} Known: {sorted(registered)}.")
    audit = None
    try:
        from mlplat.audit._log import AuditLog

        audit = AuditLog(cfg)
    except Exception:  # no audit store: splits come from the live cluster or stay unknown
        audit = None
    deployment_events: dict[str, list[Any]] = {}
    for e in audit.events(action_prefix="deployment.") if audit else []:  # one scan for all
        deployment_events.setdefault(e.target, []).append(e)
    stored_costs = _stored_costs(cfg)
    entries = []
    for name in wanted:
        rm = registered[name]
        versions = list_versions(cfg, name)
        aliases = {str(k): str(v) for k, v in (getattr(rm, "aliases", None) or {}).items()}
        card = None
        complete = [v for v in versions if v.get("complete")]
        if complete:
            try:
                card = get_model_card(cfg, name, complete[-1]["version"])
            except Exception:  # an unreadable card is shown as absent, not fatal to the index
                card = None
        events = deployment_events.get(name, [])
        app = load_app(name, cfg) if name in list_apps(cfg) else None
        # Drift is about what is served: the production version's windows, else the latest's.
        served = aliases.get("production") or (str(versions[-1]["version"]) if versions else None)
        live = _live(cfg, name, app, served)
        if "cost" not in live and name in stored_costs:
            live["cost"] = stored_costs[name]
        entries.append(build_entry(cfg, name, versions=versions, aliases=aliases,
                                   registry_tags=dict(getattr(rm, "tags", None) or {}),
                                   audit_events=events, card=card, live=live))
        if on_model is not None:
            on_model(name)
    n = cat.upsert(entries)
    if models is None:
        cat.remove_missing(set(registered))
    return n


# --------------------------------------------------------------------------- HTTP


def catalog_asgi_app(cfg: PlatformConfig, catalog: Catalog | None = None) -> Any:
    """A Starlette app serving the catalog as JSON; mount it anywhere (Serve ingress, uvicorn).

    Routes: ``GET /models?q=team:risk%20stage:production&limit=50`` → ``{"count", "models"}``;
    ``GET /models/{name}`` → one entry (404 naming close matches); ``POST /refresh``
    (admin bearer token) rebuilds the index. Bad queries are 400 with the reason.

    Example:
        >>> from starlette.testclient import TestClient
        >>> TestClient(catalog_asgi_app(cfg)).get("/models", params={"q": "team:risk"}).json()
        {'count': 1, 'models': [{'model': 'fraud', ...}]}
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mlplat.errors import MlplatError
    from mlplat.secrets import bearer_identity

    cat = catalog or Catalog(default_catalog_path(cfg))

    def _error(exc: MlplatError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    async def search(request: Request) -> JSONResponse:
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            return JSONResponse({"error": f"limit must be an integer 1..1000, got {raw_limit!r}"},
                                status_code=400)
        t0 = time.perf_counter()
        try:
            found = cat.search(request.query_params.get("q", ""), limit=int(raw_limit))
        except MlplatError as exc:
            return _error(exc)
        return JSONResponse({"count": len(found),
                             "took_ms": round((time.perf_counter() - t0) * 1000, 3),
                             "models": [json.loads(e.model_dump_json()) for e in found]})

    async def one(request: Request) -> JSONResponse:
        try:
            entry = cat.get(request.path_params["name"])
        except MlplatError as exc:
            return _error(exc)
        return JSONResponse(json.loads(entry.model_dump_json()))

    def _audit(who: str, outcome: str, request: Request, details: dict[str, Any]) -> None:
        from mlplat.audit._log import AuditLog

        client = request.client.host if request.client else "unknown"
        AuditLog(cfg).append(who, "catalog.refresh" if outcome == "ok" else "auth_failed",
                             "catalog/refresh", outcome=outcome,
                             details={"client": client, **details})

    async def refresh(request: Request) -> JSONResponse:
        try:
            who = bearer_identity(cfg, request.headers.get("authorization"))
            who.require("deployer", "refresh the catalog")
        except MlplatError as exc:
            client = request.client.host if request.client else "unknown"
            try:
                _audit(f"anonymous@{client}", "denied", request,
                       {"route": "POST /refresh", "error": str(exc)})
            except MlplatError:  # the refusal stands even if it could not be recorded
                pass
            return _error(exc)
        try:
            n = refresh_catalog(cfg, catalog=cat)
            _audit(who.name, "ok", request, {"refreshed": n})
        except MlplatError as exc:
            return _error(exc)
        return JSONResponse({"refreshed": n})

    return Starlette(routes=[Route("/models", search), Route("/models/{name}", one),
                             Route("/refresh", refresh, methods=["POST"])])
