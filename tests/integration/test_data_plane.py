"""The data plane on the shared cluster: datasets on Ray Data, Feast apply/materialize/lookup."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplat.apps import load_app
from mlplat.config import load_config
from mlplat.data import (
    OnlineFeatureClient,
    apply_features,
    build_dataset,
    materialize,
    read_manifest,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def fraud(session_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    # A storage root of its own: the e2e demo shares the session root, and its Feast registry,
    # online store and raw files must not meet this module's.
    home = tmp_path_factory.mktemp("data-plane-home")
    os.environ["MLPLAT_HOME"] = str(home)
    spec = importlib.util.spec_from_file_location("fraud_datagen", REPO / "apps/fraud/datagen.py")
    assert spec and spec.loader
    datagen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(datagen)
    paths = datagen.generate(home / "raw" / "fraud", n_accounts=60, days=3, end=NOW)
    cfg = load_config(REPO / "platform.yaml")
    try:
        yield {"cfg": cfg, "app": load_app("fraud", cfg), "paths": paths, "home": home}
    finally:
        os.environ["MLPLAT_HOME"] = str(session_home)


def test_build_dataset_is_point_in_time_correct_and_partition_independent(
    ray_cluster: str, fraud: dict, tmp_path: Path
) -> None:
    import ray

    cfg, app = fraud["cfg"], fraud["app"]
    labels = pd.read_parquet(fraud["paths"]["transactions"])
    started = time.perf_counter()
    manifest = build_dataset(cfg, app, str(fraud["paths"]["transactions"]))
    seconds = time.perf_counter() - started
    print(f"\nbuild_dataset: {len(labels)} labels in {seconds:.1f} s")

    dataset_dir = fraud["home"] / "datasets" / "fraud" / manifest.content_sha256[:12]
    assert Path(manifest.path) == dataset_dir / "data"
    assert read_manifest(dataset_dir) == manifest
    assert manifest.row_count == len(labels)
    assert ray.data.read_parquet(manifest.path).count() == len(labels)
    assert set(manifest.feature_view_versions) == {"account_profile", "account_txn_stats"}
    assert all(v.version for v in manifest.feature_spec.feature_views)
    assert not [p for p in dataset_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs

    df = pd.read_parquet(manifest.path)
    for view in ("account_profile", "account_txn_stats"):
        seen = df[f"{view}__event_timestamp"].notna()
        assert seen.any()
        assert (df.loc[seen, f"{view}__event_timestamp"] <= df.loc[seen, "event_timestamp"]).all()
    assert list(df.columns[:5]) == [
        "account_id",
        "event_timestamp",
        "is_fraud",
        "amount",
        "merchant_category",
    ]
    merged = df.merge(labels, on=["account_id", "event_timestamp", "amount"], suffixes=("", "_l"))
    assert (merged["is_fraud"] == merged["is_fraud_l"]).all()

    # The same labels split into 7 shuffled files (other blocks, other order): same content hash.
    split = tmp_path / "labels"
    split.mkdir()
    for i, part in enumerate(np.array_split(labels.sample(frac=1, random_state=1), 7)):
        part.to_parquet(split / f"part-{i}.parquet", index=False)
    again = build_dataset(cfg, app, str(split), output_dir=str(tmp_path / "out"))
    assert again.content_sha256 == manifest.content_sha256
    assert again.row_count == manifest.row_count
    assert (tmp_path / "out" / "manifest.json").is_file()


def _latest(raw: pd.DataFrame, account_id: int, features: list[str]) -> dict:
    rows = raw[raw["account_id"] == account_id].sort_values(
        ["event_timestamp", "created_timestamp"]
    )
    return rows.iloc[-1][features].to_dict()


def test_apply_materialize_and_online_lookups(fraud: dict) -> None:
    cfg, app = fraud["cfg"], fraud["app"]
    assert apply_features(cfg, app) == ["account_profile", "account_txn_stats"]
    materialize(cfg, app, end=NOW + timedelta(minutes=5))

    client = OnlineFeatureClient(cfg, app)
    profile = pd.read_parquet(fraud["paths"]["account_profile"])
    stats = pd.read_parquet(fraud["paths"]["account_txn_stats"])
    fresh = stats[stats["event_timestamp"] == stats["event_timestamp"].max()]["account_id"]
    accounts = [int(a) for a in fresh.unique()[:3]]
    got = client.get([{"account_id": a} for a in accounts] + [{"account_id": -1}])
    pv = next(v for v in app.features.feature_views if v.name == "account_profile").features
    sv = next(v for v in app.features.feature_views if v.name == "account_txn_stats").features
    for account, row in zip(accounts, got, strict=False):
        assert set(row) == set(pv + sv)
        assert row == pytest.approx(
            {**_latest(profile, account, pv), **_latest(stats, account, sv)}
        )
    assert got[-1] == dict.fromkeys(pv + sv)

    # Two days on, activity (TTL 1 day) has expired while the profile (90 days) has not.
    later = OnlineFeatureClient(cfg, app, clock=lambda: NOW + timedelta(days=2))
    row = later.get([{"account_id": accounts[0]}])[0]
    assert all(row[f] is None for f in sv) and all(row[f] is not None for f in pv)

    latencies = []
    for i in range(400):
        entity = [{"account_id": accounts[i % len(accounts)]}]
        t0 = time.perf_counter()
        client.get(entity)
        latencies.append((time.perf_counter() - t0) * 1e3)
    p50, p99 = np.percentile(latencies[50:], [50, 99])
    print(f"\nonline lookup, 1 entity, 2 views: p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    # The SLO is on p99; on a shared 2-core CI box only the median is stable enough to gate on.
    assert p50 < cfg.slos.data.online_feature_p99_ms
