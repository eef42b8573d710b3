"""The data plane on the shared cluster: datasets on Ray Data, Feast apply/materialize/lookup."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplat.apps import load_app
from mlplat.config import load_config
from mlplat.data import (
    apply_features,
    build_dataset,
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


def test_ray_job_output_equals_feast_get_historical_features(
    ray_cluster: str, fraud: dict, tmp_path: Path
) -> None:
    """The job's dataset vs Feast's file offline store on the same files and definitions.

    Equal wherever Feast answers, except where Feast's unstable sort picks another of several
    writes with the same event time; and Feast returns no row for labels it drops (an entity
    with rows but none inside the TTL, or a repeated entity+timestamp). See docs/contracts/data.md.
    """
    from mlplat.data import feature_store

    cfg, app = fraud["cfg"], fraud["app"]
    apply_features(cfg, app)
    manifest = build_dataset(cfg, app, str(fraud["paths"]["transactions"]),
                             output_dir=str(tmp_path / "ds"))
    ours = pd.read_parquet(manifest.path)
    labels = pd.read_parquet(fraud["paths"]["transactions"])
    key = ["account_id", "event_timestamp"]
    labels = labels[~labels.duplicated(key, keep=False)]
    refs = [f"{v.name}:{f}" for v in app.features.feature_views for f in v.features]
    theirs = feature_store(cfg, app).get_historical_features(
        entity_df=labels, features=refs
    ).to_df()
    theirs["event_timestamp"] = pd.to_datetime(theirs["event_timestamp"], utc=True)
    both = theirs.merge(ours, on=key, suffixes=("_feast", ""), validate="one_to_one")
    assert len(both) == len(theirs) > len(labels) // 4
    ties = 0
    for view in app.features.feature_views:
        raw = pd.read_parquet(fraud["paths"][view.name])
        writes = raw.groupby(key).size().rename("writes").reset_index()
        chosen = both.merge(
            writes.rename(columns={"event_timestamp": f"{view.name}__event_timestamp"}),
            on=["account_id", f"{view.name}__event_timestamp"], how="left",
        )
        for f in view.features:
            a, b = chosen[f"{f}_feast"].astype(float), chosen[f].astype(float)
            differ = ~(np.isclose(a, b, rtol=1e-12) | (a.isna() & b.isna()))
            assert (chosen.loc[differ, "writes"] > 1).all(), (view.name, f)
            ties += int(differ.sum())
    print(f"\n{len(both)} of {len(labels)} label rows answered by Feast; equal except {ties} "
          "values where Feast picked an older write of the same event time")
