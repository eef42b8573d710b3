"""A small fraud-shaped dataset in the data plane's on-disk format, with a learnable signal.

Shared by the training unit tests and the training integration test (the data plane is built
in parallel, so these tests do not depend on it).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplat.contracts.v1 import DatasetManifest, FeatureSpec

CATEGORIES = ["electronics", "grocery", "travel", "gaming", "fuel"]
RISKY = {"gaming": 1.5, "electronics": 0.8}


def make_frame(spec: FeatureSpec, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows with every column of ``spec``; fraud odds rise with amount, 1h activity, category."""
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    frame: dict[str, object] = {
        spec.entity_keys[0]: rng.integers(1, 500, n_rows),
        spec.timestamp_column: [
            start + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 30, n_rows)
        ],
    }
    for name in spec.feature_names():
        if name == "merchant_category":
            frame[name] = rng.choice(CATEGORIES, n_rows)
        else:
            frame[name] = rng.gamma(2.0, 50.0, n_rows)
    df = pd.DataFrame(frame)
    z = (
        -3.0
        + 1.2 * (df["amount"] - 100) / 70
        + 0.9 * (df["txn_count_1h"] - 100) / 70
        + df["merchant_category"].map(RISKY).fillna(0.0)
    )
    df[spec.label] = (rng.random(n_rows) < 1 / (1 + np.exp(-z))).astype("int64")
    # Features outside their TTL arrive as nulls from the as-of join.
    for name in ("txn_count_24h", "avg_amount_7d"):
        df.loc[rng.random(n_rows) < 0.05, name] = np.nan
    return df


def write_dataset(folder: Path, spec: FeatureSpec, n_rows: int = 4000, seed: int = 0) -> Path:
    """Write ``folder/manifest.json`` + ``folder/data/part-0.parquet``; returns ``folder``."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(make_frame(spec, n_rows, seed), preserve_index=False)
    data_file = folder / "data" / "part-0.parquet"
    pq.write_table(table, data_file)
    manifest = DatasetManifest(
        path=str(folder),
        row_count=n_rows,
        columns={f.name: str(f.type) for f in table.schema},
        feature_spec=spec,
        feature_view_versions={v.name: "test" for v in spec.feature_views},
        source_paths=["synthetic"],
        content_sha256=hashlib.sha256(data_file.read_bytes()).hexdigest(),
        created_at=datetime.now(UTC),
    )
    (folder / "manifest.json").write_text(json.dumps(manifest.model_dump(mode="json")))
    return folder
