"""Catalog and lineage on real artifacts: a real dataset manifest with parquet files, versions
registered in a real (SQLite) MLflow registry, deployments recorded in a real audit log."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from mlplat.apps import AppConfig, load_app
from mlplat.audit import AuditLog
from mlplat.config import load_config
from mlplat.contracts.v1 import DatasetManifest, Preprocessor
from mlplat.errors import NotFoundError, UserError
from mlplat.experiment import log_training_run, set_alias
from mlplat.governance import (
    Catalog,
    CatalogEntry,
    catalog_asgi_app,
    default_catalog_path,
    deployment_ranges,
    lineage_graph,
    refresh_catalog,
)
from mlplat.secrets import person_token

REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        self.t += 60.0
        return self.t


def _dataset(root: Path, app: AppConfig) -> DatasetManifest:
    """Real parquet files (labels + one source per feature view) and their manifest."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    ts = [datetime(2026, 1, 1, tzinfo=UTC)] * 3
    labels = raw / "labels.parquet"
    pq.write_table(pa.table({"account_id": [1, 2, 3], "event_timestamp": ts,
                             "is_fraud": [0, 1, 0], "amount": [5.0, 900.0, 12.0],
                             "merchant_category": ["grocery", "gaming", "fuel"]}), labels)
    sources = []
    for view in app.features.feature_views:
        path = raw / f"{view.name}.parquet"
        pq.write_table(pa.table({"account_id": [1, 2, 3], "event_timestamp": ts,
                                 **{f: [1.0, 2.0, 3.0] for f in view.features}}), path)
        sources.append(str(path))
    data = pa.table({"account_id": [1, 2, 3], "is_fraud": [0, 1, 0]})
    staging = root / "staging"
    staging.mkdir()
    pq.write_table(data, staging / "part-0.parquet")
    sha = hashlib.sha256((staging / "part-0.parquet").read_bytes()).hexdigest()
    folder = root / "datasets" / app.name / sha[:12]
    (folder / "data").mkdir(parents=True)
    (staging / "part-0.parquet").rename(folder / "data" / "part-0.parquet")
    manifest = DatasetManifest(
        path=str(folder / "data"), row_count=3, columns={"account_id": "int64"},
        feature_spec=app.features,
        feature_view_versions={v.name: f"v-{v.name}" for v in app.features.feature_views},
        source_paths=[str(labels), *sources], content_sha256=sha,
        created_at=datetime.now(UTC))
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest


def _register(cfg, app: AppConfig, folder: Path, sha: str, auc: float, run_name: str):
    # A real registration through the experiment plane; nothing here loads the network, so
    # model.pt is a placeholder file (saves importing torch).
    folder.mkdir(parents=True)
    pre = Preprocessor.model_validate({
        "numeric": [{"name": "amount", "mean": 100.0, "std": 50.0}],
        "categorical": [{"name": "merchant_category", "vocabulary": ["gaming", "grocery"]}]})
    (folder / "model.pt").write_bytes(b"placeholder: lineage and catalog never load it")
    (folder / "preprocessor.json").write_text(pre.model_dump_json())
    return log_training_run(cfg, app, model_dir=folder, params={"epochs": 1},
                            history=[{"epoch": 1, "val_auc": auc}],
                            metrics={"val_auc": auc}, dataset_sha256=sha,
                            feature_spec=app.features, run_name=run_name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """fraud v1 registered on a real dataset; v1 deployed, then shadow/canary to a v2 that
    the audit log mentions (one registration keeps the fixture cheap)."""
    home = tmp_path_factory.mktemp("mlplat-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPLAT_HOME", str(home))
    mp.delenv("MLPLAT_PROFILE", raising=False)
    cfg = load_config(REPO / "platform.yaml")
    app = load_app("fraud", cfg)
    manifest = _dataset(home, app)
    models = tmp_path_factory.mktemp("models")
    v1 = _register(cfg, app, models / "a", manifest.content_sha256, 0.80, "nightly-1")
    set_alias(cfg, "fraud", "production", v1.version)
    log = AuditLog(cfg, clock=Clock())
    split = lambda w, shadow=None: {"weights": w, "shadow": shadow}  # noqa: E731
    log.append("alice", "deployment.deploy", "fraud", reason="first release",
               details={"split": split({"1": 100.0}), "model": "fraud"})
    log.append("alice", "deployment.set_traffic", "fraud", reason="shadow v2",
               details={"from": split({"1": 100.0}), "to": split({"1": 100.0}, "2")})
    log.append("bot", "deployment.set_traffic", "fraud", reason="canary",
               details={"from": split({"1": 100.0}, "2"), "to": split({"1": 95.0, "2": 5.0})})
    log.append("bot", "deployment.set_traffic", "fraud", reason="failed", outcome="failed",
               details={"from": split({"1": 95.0, "2": 5.0}), "to": split({"2": 100.0})})
    log.append("bot", "deployment.set_traffic", "fraud", reason="promote",
               details={"from": split({"1": 95.0, "2": 5.0}), "to": split({"1": 0.0, "2": 100.0})})
    yield cfg, manifest, v1, log
    mp.undo()


def test_lineage_upstream_is_raw_files_feature_views_dataset_run(world) -> None:
    cfg, manifest, v1, _log = world
    g = lineage_graph(cfg, "fraud", v1.version)
    kinds = [n.kind for n in g.upstream()]
    assert kinds[:2] == ["run", "dataset"]
    assert sorted(kinds[2:]) == sorted(["raw_file", "feature_view", "raw_file",
                                        "feature_view", "raw_file"])
    run = g.nodes[f"run:{v1.run_id}"]
    assert run.attrs["name"] == "nightly-1" and run.attrs["status"] == "FINISHED"
    ds = g.nodes[f"dataset:{manifest.content_sha256}"]
    assert ds.attrs["rows"] == 3 and ds.attrs["manifest"].endswith("manifest.json")
    # raw file → the feature view it feeds → dataset; the label file → dataset directly
    edges = {(s, t) for s, t, _ in g.edges}
    for i, view in enumerate(manifest.feature_spec.feature_views, start=1):
        fv = f"fv:{view.name}:v-{view.name}"
        assert (f"raw:{manifest.source_paths[i]}", fv) in edges
        assert (fv, ds.id) in edges
    assert (f"raw:{manifest.source_paths[0]}", ds.id) in edges


def test_lineage_downstream_has_deployment_time_ranges(world) -> None:
    cfg, _m, v1, log = world
    events = log.events(action_prefix="deployment.")
    ts = [e.ts for e in events]
    r2 = deployment_ranges(events, "fraud", "2")
    assert [(r["role"], r["start"], r["end"]) for r in r2] == [
        ("shadow", ts[1], ts[2]), ("live", ts[2], None)]
    assert r2[1]["weights"] == [5.0, 100.0]  # the failed change is not counted
    r1 = deployment_ranges(events, "fraud", v1.version)
    assert [(r["role"], r["start"], r["end"], r["weights"]) for r in r1] == [
        ("live", ts[0], ts[4], [100.0, 95.0])]
    g = lineage_graph(cfg, "fraud", v1.version)
    deployments = [n for n in g.downstream() if n.kind == "deployment"]
    assert len(deployments) == 1 and deployments[0].attrs["end"] == ts[4].isoformat()


def test_lineage_cli_text_and_mermaid(world) -> None:
    from mlplat.cli import app as cli

    _cfg, manifest, v1, _log = world
    runner = CliRunner()
    out = runner.invoke(cli, ["lineage", "show", f"fraud:{v1.version}",
                              "-c", str(REPO / "platform.yaml")])
    assert out.exit_code == 0, out.output
    assert "upstream:" in out.output and "downstream:" in out.output
    assert manifest.content_sha256[:12] in out.output and "nightly-1" in out.output
    mer = runner.invoke(cli, ["lineage", "show", "fraud@production", "--format", "mermaid",
                              "-c", str(REPO / "platform.yaml")])
    assert mer.exit_code == 0, mer.output
    lines = mer.output.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum("-->" in line for line in lines) >= 7  # 3 raw, 2 fv, dataset, run, deploys
    with pytest.raises(NotFoundError, match=r"has no version '9'.*Versions: \['1'\]"):
        lineage_graph(_cfg, "fraud", "9")


def test_catalog_refresh_from_the_registry(world, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _m, v1, _log = world
    # The fallback path: no live router. (In a full `make test` this process is connected to
    # the shared Ray cluster, where the e2e demo's "fraud" app is live.)
    import mlplat.governance._catalog as catalog_module

    monkeypatch.setattr(catalog_module, "_live", lambda *a, **k: {})
    cat = Catalog(default_catalog_path(cfg))
    assert refresh_catalog(cfg, catalog=cat) == 1
    e = cat.get("fraud")
    assert (e.team, e.owner, e.latest_version, e.stage) == (
        "risk", "risk-ml-leads@example.com", v1.version, "production")
    assert e.stages == {"production": v1.version}
    assert e.traffic_split == {"1": 0.0, "2": 100.0} and e.traffic_source == "audit"
    assert e.cost_per_inference_usd is None and e.drift_status == "unknown"  # no cluster here
    assert "amount" in e.input_schema["request_features"] and e.output_schema["label"]
    assert e.output_schema["signature"][0]["name"] == "score"  # the version's own signature
    assert e.slos["gate_metric"] == "val_auc" and e.slos["p99_ms_max"] == 250
    assert e.card_sha256 and e.links["lineage"] == f"mlplat lineage show fraud:{v1.version}"
    assert [x.model for x in cat.search("team:risk stage:production")] == ["fraud"]
    assert cat.search("team:risk stage:canary") == []
    assert [x.model for x in cat.search("feature:txn_count_1h transactions")] == ["fraud"]
    with pytest.raises(NotFoundError, match="Did you mean"):
        refresh_catalog(cfg, ["fraudd"], catalog=cat)


def test_catalog_cli_json(world) -> None:
    from mlplat.cli import app as cli

    out = CliRunner().invoke(cli, ["catalog", "search", "team:risk stage:production", "--json",
                                   "-c", str(REPO / "platform.yaml")])
    assert out.exit_code == 0, out.output
    assert [m["model"] for m in json.loads(out.output)] == ["fraud"]


def _synthetic(n: int) -> list[CatalogEntry]:
    teams = ["risk", "recommendations", "search"]
    return [CatalogEntry(model=f"model-{i:04d}", team=teams[i % 3], owner=f"owner{i % 7}@x",
                         description=f"synthetic model number {i} for {teams[i % 3]}",
                         latest_version=str(i % 5 + 1),
                         stage="production" if i % 4 == 0 else "staging",
                         stages={"production" if i % 4 == 0 else "staging": "1"},
                         input_schema={"features": [f"f{i % 11}", "amount"]},
                         drift_status=["ok", "warning", "critical"][i % 3])
            for i in range(n)]


def test_search_terms_on_a_thousand_models(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat.db")
    entries = _synthetic(1000)
    assert cat.upsert(entries) == 1000 and len(cat) == 1000

    def expect(pred) -> list[str]:
        return sorted(e.model for e in entries if pred(e))[:1000]

    got = lambda q: [e.model for e in cat.search(q, limit=1000)]  # noqa: E731
    assert got("team:risk stage:production") == expect(
        lambda e: e.team == "risk" and "production" in e.stages)
    assert got("owner:owner3* drift:critical") == expect(
        lambda e: e.owner.startswith("owner3") and e.drift_status == "critical")
    assert got("feature:f7 team:search") == expect(
        lambda e: "f7" in e.input_schema["features"] and e.team == "search")
    # a quoted phrase; its last word is a prefix: number 12, 120…129
    assert got('"number 12"') == expect(lambda e: e.description.split()[3].startswith("12"))
    assert got("stage:registered") == []
    assert cat.upsert(entries[:1]) == 1 and len(cat) == 1000  # upsert replaces
    with pytest.raises(UserError, match=r"Unknown catalog field 'tema'.*Did you mean 'team'"):
        cat.search("tema:risk")
    with pytest.raises(UserError, match="Close the quote"):
        cat.search('"open')


def test_http_endpoint(tmp_path: Path, platform_config) -> None:
    cat = Catalog(tmp_path / "cat.db")
    cat.upsert(_synthetic(30))
    client = TestClient(catalog_asgi_app(platform_config, catalog=cat))
    r = client.get("/models", params={"q": "team:risk stage:production"})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["models"]) == 3  # i % 12 == 0 for i < 30
    assert {m["team"] for m in body["models"]} == {"risk"}
    assert client.get("/models", params={"q": "bogus:1"}).status_code == 400
    assert client.get("/models", params={"limit": "x"}).status_code == 400
    missing = client.get("/models/model-99999")
    assert missing.status_code == 404 and "model-0" in missing.json()["error"]
    assert client.get("/models/model-0004").json()["owner"] == "owner4@x"
    assert client.post("/refresh").status_code == 401  # a person's token required …
    last = AuditLog(platform_config).events()[-1]  # … and the failed auth is audited
    assert (last.action, last.outcome, last.target) == ("auth_failed", "denied",
                                                        "catalog/refresh")
    viewer = {"authorization": f"Bearer {person_token(platform_config, 'dana')}"}
    assert client.post("/refresh", headers=viewer).status_code == 403  # a viewer changes nothing
    deployer = {"authorization": f"Bearer {person_token(platform_config, 'alice')}"}
    assert client.post("/refresh", headers=deployer).status_code == 200
    last = AuditLog(platform_config).events()[-1]  # the audit names whose token it was
    assert (last.actor, last.action, last.outcome) == ("alice", "catalog.refresh", "ok")
