"""build_dataset refuses bad inputs with actionable messages, before Ray and before writing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mlplat.contracts.v1 import FeatureViewRef
from mlplat.data import build_dataset, read_manifest
from mlplat.data._dataset import plan_dataset
from mlplat.data._feast import load_definitions
from mlplat.errors import InfraError, NotFoundError, UserError


@pytest.fixture()
def labels(fraud_home: dict) -> pd.DataFrame:
    return pd.read_parquet(fraud_home["paths"]["transactions"])


def _write(df: pd.DataFrame, path: Path) -> str:
    df.to_parquet(path, index=False)
    return str(path)


def _nothing_written(fraud_home: dict) -> None:
    assert not (fraud_home["home"] / "datasets").exists()


def test_missing_entity_column_names_column_and_file(fraud_home, labels, tmp_path) -> None:
    path = _write(labels.drop(columns=["account_id"]), tmp_path / "no_key.parquet")
    with pytest.raises(
        UserError,
        match=r"no column 'account_id'.*no_key\.parquet|no_key\.parquet.*no column 'account_id'",
    ):
        build_dataset(fraud_home["cfg"], fraud_home["app"], path)
    _nothing_written(fraud_home)


def test_missing_timestamp_column_suggests_the_near_name(fraud_home, labels, tmp_path) -> None:
    path = _write(
        labels.rename(columns={"event_timestamp": "event_timestmp"}), tmp_path / "l.parquet"
    )
    with pytest.raises(
        UserError, match=r"no column 'event_timestamp'.*Did you mean 'event_timestmp'"
    ):
        build_dataset(fraud_home["cfg"], fraud_home["app"], path)
    _nothing_written(fraud_home)


def test_naive_timestamps_are_refused(fraud_home, labels, tmp_path) -> None:
    naive = labels.assign(event_timestamp=labels["event_timestamp"].dt.tz_localize(None))
    path = _write(naive, tmp_path / "naive.parquet")
    with pytest.raises(
        UserError, match=r"'event_timestamp' of label set .*naive\.parquet holds naive.*tz_localize"
    ):
        build_dataset(fraud_home["cfg"], fraud_home["app"], path)
    _nothing_written(fraud_home)


def test_empty_label_set_is_refused(fraud_home, labels, tmp_path) -> None:
    path = _write(labels.iloc[:0], tmp_path / "empty.parquet")
    with pytest.raises(UserError, match=r"empty\.parquet has no rows"):
        build_dataset(fraud_home["cfg"], fraud_home["app"], path)
    _nothing_written(fraud_home)


def test_missing_label_file(fraud_home, tmp_path) -> None:
    with pytest.raises(UserError, match=r"Label set not found: .*nope\.parquet"):
        build_dataset(fraud_home["cfg"], fraud_home["app"], str(tmp_path / "nope.parquet"))


def test_unknown_feature_view_suggests_the_defined_one(fraud_home) -> None:
    app = fraud_home["app"]
    refs = [FeatureViewRef(name="account_profil", features=["credit_limit"], ttl_s=60)]
    typo = app.model_copy(
        update={"features": app.features.model_copy(update={"feature_views": refs})}
    )
    _, views = load_definitions(fraud_home["cfg"], app)
    with pytest.raises(
        NotFoundError,
        match=r"Unknown feature view 'account_profil'.*Did you mean 'account_profile'",
    ):
        plan_dataset(typo, views, str(fraud_home["paths"]["transactions"]))


def test_unknown_feature_of_a_view(fraud_home) -> None:
    app = fraud_home["app"]
    refs = [FeatureViewRef(name="account_profile", features=["credit_limt"], ttl_s=60)]
    typo = app.model_copy(
        update={"features": app.features.model_copy(update={"feature_views": refs})}
    )
    _, views = load_definitions(fraud_home["cfg"], app)
    with pytest.raises(
        NotFoundError, match=r"no feature\(s\) \['credit_limt'\].*Did you mean 'credit_limit'"
    ):
        plan_dataset(typo, views, str(fraud_home["paths"]["transactions"]))


def test_mismatched_entity_key_types(fraud_home, labels, tmp_path) -> None:
    path = _write(
        labels.assign(account_id=labels["account_id"].astype(str)), tmp_path / "s.parquet"
    )
    with pytest.raises(
        UserError, match="Entity key 'account_id' is string in the labels but int64"
    ):
        build_dataset(fraud_home["cfg"], fraud_home["app"], path)


def test_plan_types_the_output(fraud_home) -> None:
    app = fraud_home["app"]
    _, views = load_definitions(fraud_home["cfg"], app)
    plan = plan_dataset(app, views, str(fraud_home["paths"]["transactions"]))
    spec = app.features
    expected = [
        *spec.entity_keys,
        spec.timestamp_column,
        spec.label,
        *spec.request_features,
        *[f for v in spec.feature_views for f in v.features],
        "account_profile__event_timestamp",
        "account_txn_stats__event_timestamp",
    ]
    assert plan.output.names == expected
    assert plan.output.field("txn_count_1h").type == pa.int64()


def test_read_manifest_errors(tmp_path) -> None:
    with pytest.raises(NotFoundError, match=r"No dataset manifest at .*manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"path": 1}')
    with pytest.raises(UserError, match="not a valid DatasetManifest"):
        read_manifest(tmp_path / "manifest.json")


class _FailingWrite:
    """Stands in for the joined Ray dataset: writes one part file, then the disk 'fills up'."""

    def write_parquet(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "part-0.parquet").write_bytes(b"partial")
        raise OSError(28, "No space left on device")


class _GoodWrite:
    def write_parquet(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        pd.DataFrame({"a": [1]}).to_parquet(Path(path) / "part-0.parquet")


def _manifest(target: Path):
    from datetime import UTC, datetime

    from mlplat.contracts.v1 import DatasetManifest, FeatureSpec

    spec = FeatureSpec(
        entity_keys=["k"],
        feature_views=[FeatureViewRef(name="v", features=["f"], ttl_s=1)],
        label="y",
    )
    return DatasetManifest(
        path=str(target / "data"),
        row_count=1,
        columns={"a": "int64"},
        feature_spec=spec,
        feature_view_versions={"v": "x"},
        source_paths=[],
        content_sha256="0" * 64,
        created_at=datetime.now(UTC),
    )


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    from mlplat.data._dataset import _write_atomically

    target = tmp_path / "datasets" / "abc"
    with pytest.raises(InfraError, match=r"Writing dataset to .*abc failed.*No space left"):
        _write_atomically(_FailingWrite(), _manifest(target), target)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_successful_write_appears_at_once_with_its_manifest(tmp_path: Path) -> None:
    from mlplat.data._dataset import _write_atomically

    target = tmp_path / "datasets" / "abc"
    manifest = _manifest(target)
    _write_atomically(_GoodWrite(), manifest, target)
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == ["abc"]
    assert read_manifest(target / "manifest.json") == manifest


def test_duplicate_feature_names_across_views_are_refused(fraud_home) -> None:
    app = fraud_home["app"]
    refs = [
        FeatureViewRef(name="account_profile", features=["credit_limit"], ttl_s=60),
        FeatureViewRef(name="account_txn_stats", features=["credit_limit"], ttl_s=60),
    ]
    twice = app.model_copy(
        update={"features": app.features.model_copy(update={"feature_views": refs})}
    )
    _, views = load_definitions(fraud_home["cfg"], app)
    with pytest.raises(
        UserError,
        match=r"Feature 'credit_limit' is listed by both feature view 'account_profile' and "
        r"'account_txn_stats'.*Rename the feature",
    ):
        plan_dataset(twice, views, str(fraud_home["paths"]["transactions"]))
    _nothing_written(fraud_home)
