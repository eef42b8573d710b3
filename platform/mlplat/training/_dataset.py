"""Reading a training dataset (manifest + parquet), splitting it and fitting the Preprocessor.

Everything here runs on the job driver before any cluster time is spent, so a wrong dataset
fails in seconds with a message, not minutes later inside a Train worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from mlplat.contracts.v1 import DatasetManifest, FeatureSpec, Preprocessor
from mlplat.errors import NotFoundError, UserError

MANIFEST_FILE = "manifest.json"
DATA_DIR = "data"
MAX_VOCABULARY = 64
"""Most frequent values kept per categorical column; rarer ones encode as all zeros."""
MIN_STD = 1e-6
"""Below this a numeric column is treated as constant (std 1.0, so it encodes to 0)."""


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset read into memory with the manifest that describes it."""

    manifest: DatasetManifest
    frame: pd.DataFrame
    categorical: list[str]
    numeric: list[str]


@dataclass(frozen=True)
class Split:
    """Train/validation matrices, already encoded by the fitted preprocessor."""

    preprocessor: Preprocessor
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _manifest_path(dataset: str) -> Path:
    path = Path(dataset).expanduser()
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise NotFoundError(
            f"No dataset manifest at '{path}'. Pass the folder jobs/build_dataset.py wrote "
            f"(it holds {MANIFEST_FILE} and {DATA_DIR}/) or the {MANIFEST_FILE} itself."
        )
    return path


def _parquet_files(manifest_file: Path, manifest: DatasetManifest) -> list[Path]:
    # The data sits next to the manifest; manifest.path is where it was written, which differs
    # when the folder has been copied or mounted elsewhere since.
    candidates = [
        manifest_file.parent / DATA_DIR,
        Path(manifest.path) / DATA_DIR,
        Path(manifest.path),
    ]
    for folder in candidates:
        if folder.is_dir():
            files = sorted(folder.rglob("*.parquet"))
            if files:
                return files
    raise NotFoundError(
        f"Dataset {manifest_file} has no parquet files; looked in "
        f"{[str(c) for c in candidates]}. Rebuild it with jobs/build_dataset.py."
    )


def _is_categorical(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_dictionary(arrow_type)
    )


def load_dataset(dataset: str, expected_spec: FeatureSpec) -> LoadedDataset:
    """Read a dataset folder and check it carries the columns ``expected_spec`` needs.

    Raises:
        NotFoundError: no manifest or no parquet files.
        UserError: the manifest is invalid, was built for another feature spec, or a column
            is missing / the label is not binary.
    """
    manifest_file = _manifest_path(dataset)
    try:
        manifest = DatasetManifest.model_validate(json.loads(manifest_file.read_text()))
    except json.JSONDecodeError as exc:
        raise UserError(f"{manifest_file}: not valid JSON: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {repr(e.get('input'))[:80]})"
            for e in exc.errors()
        )
        raise UserError(
            f"{manifest_file}: not a valid DatasetManifest: {problems}. "
            "Rebuild it with jobs/build_dataset.py."
        ) from exc
    spec = manifest.feature_spec
    if spec.feature_names() != expected_spec.feature_names() or spec.label != expected_spec.label:
        raise UserError(
            f"Dataset {manifest_file} was built for features {spec.feature_names()} "
            f"(label '{spec.label}') but the app expects {expected_spec.feature_names()} "
            f"(label '{expected_spec.label}'). Rebuild the dataset for this app."
        )
    files = _parquet_files(manifest_file, manifest)
    wanted = [*spec.feature_names(), spec.label]
    table = pa.concat_tables(
        [pq.read_table(f, columns=None) for f in files], promote_options="default"
    )
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise UserError(
            f"Dataset {manifest_file} lacks columns {missing} (it has {table.column_names}). "
            "Rebuild it with jobs/build_dataset.py."
        )
    table = table.select(wanted)
    categorical = [c for c in spec.feature_names() if _is_categorical(table.schema.field(c).type)]
    numeric = [c for c in spec.feature_names() if c not in categorical]
    frame = table.to_pandas()
    labels = frame[spec.label]
    if labels.isna().any() or not set(pd.unique(labels)).issubset({0, 1}):
        raise UserError(
            f"Label '{spec.label}' in {manifest_file} must be 0/1 with no nulls; found values "
            f"{sorted(map(str, pd.unique(labels)))[:10]}."
        )
    return LoadedDataset(manifest=manifest, frame=frame, categorical=categorical, numeric=numeric)


def split_indices(
    n_rows: int, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation row indices: the same seed always gives the same split.

    Example:
        >>> train, val = split_indices(10, 0.2, seed=7)
        >>> len(train), len(val)
        (8, 2)
    """
    n_val = max(1, round(n_rows * validation_fraction))
    if n_rows - n_val < 1:
        raise UserError(
            f"Dataset has {n_rows} rows: too few to hold out {validation_fraction:.0%}."
        )
    perm = np.random.default_rng(seed).permutation(n_rows)
    # Sorted so the matrices keep the dataset's row order, which keeps them reproducible.
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fit_preprocessor(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> Preprocessor:
    """Fit numeric mean/std and categorical vocabularies on (training) rows.

    Example:
        >>> df = pd.DataFrame({"a": [1.0, 3.0], "c": ["x", "y"]})
        >>> p = fit_preprocessor(df, ["a"], ["c"])
        >>> p.numeric[0].mean, p.categorical[0].vocabulary
        (2.0, ['x', 'y'])
    """
    # Plain dicts validated by the contract: its column classes are not part of its public API.
    numeric_cols: list[dict[str, Any]] = []
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        mean = float(values.mean()) if values.notna().any() else 0.0
        std = float(values.std(ddof=0)) if values.notna().sum() > 1 else 0.0
        numeric_cols.append({"name": name, "mean": mean, "std": std if std > MIN_STD else 1.0})
    categorical_cols: list[dict[str, Any]] = []
    for name in categorical:
        counts = frame[name].dropna().astype(str).value_counts()
        if counts.empty:
            raise UserError(
                f"Categorical feature '{name}' is null in every training row; the dataset "
                "cannot teach the model anything about it. Check the feature pipeline."
            )
        # Ties broken by value so the vocabulary does not depend on row order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_VOCABULARY]
        categorical_cols.append({"name": name, "vocabulary": sorted(v for v, _ in ranked)})
    return Preprocessor.model_validate({"numeric": numeric_cols, "categorical": categorical_cols})


def transform_frame(preprocessor: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """Vectorised ``Preprocessor.transform_rows`` for a DataFrame (same numbers, float32).

    Training encodes whole datasets with this; serving encodes single requests with the
    contract's ``transform_rows``; a unit test keeps the two equal.
    """
    parts: list[np.ndarray] = []
    for col in preprocessor.numeric:
        values = pd.to_numeric(frame[col.name], errors="coerce").to_numpy(dtype="float64")
        encoded = (values - col.mean) / col.std
        parts.append(np.nan_to_num(encoded, nan=0.0)[:, None])
    for cat in preprocessor.categorical:
        values = frame[cat.name].to_numpy(dtype=object)
        parts.append(np.stack([values == v for v in cat.vocabulary], axis=1).astype("float64"))
    if not parts:
        return np.zeros((len(frame), 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def prepare_split(data: LoadedDataset, validation_fraction: float, seed: int) -> Split:
    """Split, fit the preprocessor on the training rows only, and encode both splits.

    Raises:
        UserError: either split holds only one class (AUC would be undefined).
    """
    label = data.manifest.feature_spec.label
    train_idx, val_idx = split_indices(len(data.frame), validation_fraction, seed)
    train_df, val_df = data.frame.iloc[train_idx], data.frame.iloc[val_idx]
    preprocessor = fit_preprocessor(train_df, data.numeric, data.categorical)
    y_train = train_df[label].to_numpy(dtype=np.float32)
    y_val = val_df[label].to_numpy(dtype=np.float32)
    for name, y in (("training", y_train), ("validation", y_val)):
        if len(np.unique(y)) < 2:
            raise UserError(
                f"The {name} split has only label {y[:1].tolist()} ({len(y)} rows); it needs "
                "both classes. Use a larger dataset or another training.seed."
            )
    return Split(
        preprocessor=preprocessor,
        x_train=transform_frame(preprocessor, train_df),
        y_train=y_train,
        x_val=transform_frame(preprocessor, val_df),
        y_val=y_val,
    )
