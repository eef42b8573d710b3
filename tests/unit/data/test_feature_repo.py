"""The fraud Feast repo agrees with app.yaml, and its config follows the active profile."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mlplat.data import feast_env
from mlplat.data._env import exports
from mlplat.data._feast import load_definitions, repo_config, view_version
from mlplat.errors import UserError


def test_views_features_and_ttls_agree_with_app_yaml(fraud_home: dict) -> None:
    app = fraud_home["app"]
    entities, views = load_definitions(fraud_home["cfg"], app)
    assert [e.join_key for e in entities] == app.features.entity_keys
    assert list(views) == [ref.name for ref in app.features.feature_views]
    for ref in app.features.feature_views:
        view = views[ref.name]
        assert [f.name for f in view.features] == ref.features
        assert view.ttl is not None and view.ttl.total_seconds() == ref.ttl_s
        assert view.batch_source.path == f"{fraud_home['home']}/raw/fraud/{ref.name}.parquet"
        assert view.batch_source.timestamp_field == app.features.timestamp_column


def test_view_version_follows_the_definition_not_the_storage_root(
    fraud_home: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg, app = fraud_home["cfg"], fraud_home["app"]
    _, views = load_definitions(cfg, app)
    monkeypatch.setenv("MLPLAT_HOME", str(tmp_path))
    _, moved = load_definitions(cfg, app)
    for name in views:
        assert view_version(views[name]) == view_version(moved[name])
    shorter = views["account_txn_stats"]
    before = view_version(shorter)
    shorter.ttl = shorter.ttl / 2
    assert view_version(shorter) != before


def test_sqlite_profile_env(fraud_home: dict) -> None:
    home = fraud_home["home"]
    env = feast_env(fraud_home["cfg"], "fraud")
    assert env["MLPLAT_FEAST_REGISTRY"] == f"{home}/feast/fraud/registry.db"
    assert env["MLPLAT_FEAST_RAW_DIR"] == f"{home}/raw/fraud"
    assert json.loads(env["MLPLAT_FEAST_ONLINE_STORE"]) == {
        "type": "sqlite",
        "path": f"{home}/feast/online.db",
    }
    config = repo_config(fraud_home["cfg"], "fraud")
    assert config.project == "fraud"
    assert config.online_store.path == f"{home}/feast/online.db"
    assert 'export MLPLAT_FEAST_ONLINE_STORE=\'{"type": "sqlite"' in exports(env)


def test_redis_profile_gives_a_redis_online_store(
    fraud_home: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fraud_home["cfg"]
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    monkeypatch.delenv("MLPLAT_HOME")
    prod = cfg.profiles["prod"]
    env = feast_env(cfg, "fraud")
    assert env["MLPLAT_FEAST_REGISTRY"] == f"{prod.root}/feast/fraud/registry.db"
    assert env["MLPLAT_FEAST_RAW_DIR"] == f"{prod.root}/raw/fraud"
    if importlib.util.find_spec("redis") is None:
        with pytest.raises(
            UserError, match=r"needs an extra package: pip install 'feast\[redis\]'"
        ):
            repo_config(cfg, "fraud")
        return
    config = repo_config(cfg, "fraud")
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == prod.online_store.connection_string
