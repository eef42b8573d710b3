"""Dataset reading, the deterministic split and the preprocessor fit (no Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplat.apps import AppConfig, load_app
from mlplat.errors import NotFoundError, UserError
from mlplat.training import fit_preprocessor, split_indices, transform_frame
from mlplat.training._dataset import load_dataset, prepare_split
from tests.unit.training.synthetic import write_dataset


@pytest.fixture()
def app(platform_config) -> AppConfig:
    return load_app("fraud", platform_config)


def test_split_is_deterministic_and_disjoint() -> None:
    train_a, val_a = split_indices(1000, 0.2, seed=7)
    train_b, val_b = split_indices(1000, 0.2, seed=7)
    _, val_c = split_indices(1000, 0.2, seed=8)
    assert np.array_equal(val_a, val_b) and np.array_equal(train_a, train_b)
    assert not np.array_equal(val_a, val_c)
    assert len(val_a) == 200 and len(train_a) == 800
    assert set(train_a).isdisjoint(val_a) and set(train_a) | set(val_a) == set(range(1000))


def test_preprocessor_fit_numeric_and_categorical() -> None:
    df = pd.DataFrame(
        {
            "a": [1.0, 3.0, None, 5.0],
            "const": [2.0, 2.0, 2.0, 2.0],
            "c": ["x", "y", "x", None],
        }
    )
    p = fit_preprocessor(df, ["a", "const"], ["c"])
    a, const = p.numeric
    assert a.mean == pytest.approx(3.0)  # nulls ignored
    assert a.std == pytest.approx(math.sqrt(8 / 3))
    assert const.std == 1.0  # a constant column gets a unit std, never 0
    assert p.categorical[0].vocabulary == ["x", "y"]
    assert p.width == 2 + 2


def test_vectorised_transform_matches_contract_transform_rows(
    app: AppConfig, tmp_path: Path
) -> None:
    """Training encodes with transform_frame, serving with transform_rows: they must agree."""
    data = load_dataset(str(write_dataset(tmp_path / "ds", app.features, n_rows=300)), app.features)
    p = fit_preprocessor(data.frame, data.numeric, data.categorical)
    frame = data.frame.head(50).copy()
    frame.loc[frame.index[0], "merchant_category"] = "never-seen"
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    expected = np.array(p.transform_rows(rows), dtype=np.float32)
    got = transform_frame(p, frame)
    assert got.dtype == np.float32 and got.shape == (50, p.width)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert got[0, len(p.numeric) :].sum() == 0  # an unknown category encodes as all zeros


def test_load_dataset_detects_categoricals(app: AppConfig, tmp_path: Path) -> None:
    data = load_dataset(str(write_dataset(tmp_path / "ds", app.features, n_rows=200)), app.features)
    assert data.categorical == ["merchant_category"]
    assert len(data.numeric) == len(app.features.feature_names()) - 1
    split = prepare_split(data, 0.25, seed=1)
    assert split.x_train.shape == (150, split.preprocessor.width)
    assert split.x_val.shape == (50, split.preprocessor.width)
    assert not np.isnan(split.x_train).any()


def test_missing_dataset_names_the_path(app: AppConfig, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"No dataset manifest at .*nowhere.*manifest\.json"):
        load_dataset(str(tmp_path / "nowhere"), app.features)


def test_dataset_for_another_feature_spec_is_refused(app: AppConfig, tmp_path: Path) -> None:
    other = app.features.model_copy(
        update={"request_features": ["amount", "merchant_category", "channel"]}
    )
    folder = write_dataset(tmp_path / "ds", other, n_rows=100)
    with pytest.raises(UserError, match=r"was built for features .* but the app expects"):
        load_dataset(str(folder), app.features)


def test_missing_column_is_named(app: AppConfig, tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "ds", app.features, n_rows=100)
    part = folder / "data" / "part-0.parquet"
    pd.read_parquet(part).drop(columns=["credit_limit"]).to_parquet(part)
    with pytest.raises(UserError, match=r"lacks columns \['credit_limit'\]"):
        load_dataset(str(folder / "manifest.json"), app.features)


def test_single_class_split_is_refused(app: AppConfig, tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "ds", app.features, n_rows=100)
    part = folder / "data" / "part-0.parquet"
    df = pd.read_parquet(part)
    df["is_fraud"] = 0
    df.to_parquet(part)
    data = load_dataset(str(folder), app.features)
    with pytest.raises(UserError, match=r"split has only label \[0\.0\].*needs both classes"):
        prepare_split(data, 0.2, seed=0)


def test_invalid_manifest_is_a_user_error(app: AppConfig, tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "ds", app.features, n_rows=50)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["content_sha256"] = "not-a-hash"
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(
        UserError, match=r"not a valid DatasetManifest: content_sha256: .*'not-a-hash'"
    ):
        load_dataset(str(folder), app.features)
