"""build_dataset on an S3-compatible object store (moto's server on loopback), as a Ray job.

The storage root, the raw feature tables, the label set and the output all live in a bucket.
The job gets the AWS variables (and the endpoint override) through its runtime_env, so its
driver and every Ray Data worker reach the same server.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlplat.data._hash import content_sha256, table_digest
from mlplat.data._storage import list_files, resolve
from tests.conftest import S3_BUCKET as BUCKET
from tests.ray_fixtures import run_repo_job

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _upload(local: Path, uri: str) -> None:
    fs, path = resolve(uri)
    pq.write_table(pq.read_table(local), path, filesystem=fs)


@pytest.mark.slow
def test_build_dataset_job_reads_and_writes_s3(
    s3: dict[str, str], ray_dashboard_url: str, tmp_path: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    from mlplat.jobs import last_json_line

    spec = importlib.util.spec_from_file_location("fraud_datagen", REPO / "apps/fraud/datagen.py")
    assert spec and spec.loader
    datagen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(datagen)
    paths = datagen.generate(tmp_path / "raw", n_accounts=30, days=2, end=END)
    root = f"s3://{BUCKET}/home"
    for view in ("account_profile", "account_txn_stats"):
        _upload(paths[view], f"{root}/raw/fraud/{view}.parquet")
    labels = f"s3://{BUCKET}/labels/transactions.parquet"
    _upload(paths["transactions"], labels)

    logs = run_repo_job(JobSubmissionClient(ray_dashboard_url),
                        f"python jobs/build_dataset.py --app fraud --labels {labels}",
                        {**s3, "MLPLAT_HOME": root},
                        {"team": "risk", "model": "fraud", "pool": "cpu", "cpus": "1"})
    summary = last_json_line(logs)
    sha = summary["content_sha256"]
    target = f"{root}/datasets/fraud/{sha[:12]}"
    assert summary["manifest"] == f"{target}/manifest.json"

    fs, path = resolve(target)
    manifest = json.loads(fs.open_input_stream(f"{path}/manifest.json").read())
    assert manifest["path"] == f"{target}/data"
    assert manifest["source_paths"][0] == labels
    assert manifest["source_paths"][1] == f"{root}/raw/fraud/account_profile.parquet"
    # Nothing but the committed dataset under datasets/: the temp prefix is gone.
    everything = list_files(fs, f"{BUCKET}/home/datasets")
    assert everything and all(f.startswith(f"{path}/") for f in everything), everything
    data = pq.read_table(f"{path}/data", filesystem=fs)
    assert data.num_rows == pq.read_metadata(paths["transactions"]).num_rows
    assert manifest["row_count"] == data.num_rows
    # The manifest's hash is the hash of what is in the bucket.
    assert content_sha256(data.schema, [table_digest(data)]) == sha
    df = data.to_pandas()
    for view in ("account_profile", "account_txn_stats"):
        seen = df[f"{view}__event_timestamp"].notna()
        assert seen.mean() > 0.5
        assert (df.loc[seen, f"{view}__event_timestamp"] <= df.loc[seen, "event_timestamp"]).all()


class _FailingWrite:
    """The joined dataset's write: some part files reach the bucket, then the upload fails."""

    def write_parquet(self, uri: str) -> None:
        fs, path = resolve(uri)
        with fs.open_output_stream(f"{path}/part-0.parquet") as out:
            out.write(b"partial")
        raise OSError("connection reset by peer")


def test_a_failed_write_to_s3_leaves_nothing(s3: dict[str, str]) -> None:
    from mlplat.data._dataset import _write_atomically
    from mlplat.errors import InfraError

    target = f"s3://{BUCKET}/failed/datasets/fraud/abc"
    manifest = _manifest(target)
    with pytest.raises(InfraError, match=r"Writing dataset to s3://.*abc failed.*reset"):
        _write_atomically(_FailingWrite(), manifest, target)
    fs, _ = resolve(target)
    assert list_files(fs, f"{BUCKET}/failed") == []


def _manifest(target: str):
    from mlplat.contracts.v1 import DatasetManifest, FeatureSpec, FeatureViewRef

    spec = FeatureSpec(
        entity_keys=["k"], feature_views=[FeatureViewRef(name="v", features=["f"], ttl_s=1)],
        label="y",
    )
    return DatasetManifest(
        path=f"{target}/data", row_count=1, columns={"a": "int64"}, feature_spec=spec,
        feature_view_versions={"v": "x"}, source_paths=[], content_sha256="0" * 64,
        created_at=datetime.now(UTC),
    )
