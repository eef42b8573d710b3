"""Explaining and slicing a model version on its evaluation set: SHAP values and fairness.

Both work on the encoded matrix the model consumes (``Preprocessor`` output) and map columns
back to features: a categorical feature's one-hot columns are summed for SHAP (SHAP values
are additive) and define its slices for the fairness metrics.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np

from mlplat.contracts.v1 import FeatureAttribution, Preprocessor, SliceMetrics

SHAP_SAMPLE_ROWS = 100
SHAP_BACKGROUND_ROWS = 50
THRESHOLD = 0.5


def feature_groups(preprocessor: Preprocessor) -> list[tuple[str, list[int]]]:
    """(feature name, its matrix columns) in matrix order.

    Example:
        >>> feature_groups(pre)[:2]
        [('amount', [0]), ('merchant_category', [1, 2, 3])]
    """
    groups: list[tuple[str, list[int]]] = []
    col = 0
    for num in preprocessor.numeric:
        groups.append((num.name, [col]))
        col += 1
    for cat in preprocessor.categorical:
        groups.append((cat.name, list(range(col, col + len(cat.vocabulary)))))
        col += len(cat.vocabulary)
    return groups


def matrix_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of an evaluation set's encoded rows and labels (its content identity).

    Example:
        >>> len(matrix_sha256(np.zeros((2, 3), "float32"), np.zeros(2, "float32")))
        64
    """
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, np.float32)):
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _predict(module: Any) -> Any:
    import torch

    def f(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = module(torch.as_tensor(np.asarray(x, dtype=np.float32)))
            return torch.sigmoid(logits).numpy().astype("float64")  # type: ignore[no-any-return]

    return f


def shap_values(
    module: Any,
    preprocessor: Preprocessor,
    x: np.ndarray,
    *,
    sample_rows: int = SHAP_SAMPLE_ROWS,
    background_rows: int = SHAP_BACKGROUND_ROWS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-feature SHAP values of the fraud probability on a sample of ``x``.

    Uses ``shap.PermutationExplainer`` (model-agnostic, exact additivity) with a background of
    ``background_rows`` other rows; one-hot columns are summed into their feature.

    Returns:
        ``(values [rows, features], sampled row indices, feature names)``.

    Example:
        >>> values, idx, names = shap_values(module, pre, x_val)
        >>> values.shape == (len(idx), len(names))
        True
    """
    import shap

    rng = np.random.default_rng(seed)
    n = len(x)
    idx = np.sort(rng.choice(n, size=min(sample_rows, n), replace=False))
    bg = x[rng.choice(n, size=min(background_rows, n), replace=False)]
    explainer = shap.PermutationExplainer(_predict(module), shap.maskers.Independent(bg))
    explained = explainer(x[idx], max_evals=2 * x.shape[1] + 1, silent=True)
    raw = np.asarray(explained.values, dtype="float64")
    groups = feature_groups(preprocessor)
    values = np.stack([raw[:, cols].sum(axis=1) for _, cols in groups], axis=1)
    return values, idx, [name for name, _ in groups]


def shap_summary(values: np.ndarray, names: list[str]) -> list[FeatureAttribution]:
    """Mean |SHAP| per feature, largest first (what the card shows)."""
    means = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(names))
    order = sorted(range(len(names)), key=lambda i: (-means[i], names[i]))
    return [FeatureAttribution(feature=names[i], mean_abs_shap=float(means[i])) for i in order]


def shap_npz(values: np.ndarray, idx: np.ndarray, names: list[str]) -> bytes:
    """The artifact stored per version: ``values``, ``row_index``, ``features``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, values=values, row_index=idx, features=np.array(names))
    return buf.getvalue()


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    pos, neg = p[y >= 0.5], p[y < 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Mann-Whitney U with ties counted half: exact AUC.
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    scores = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(scores))
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and scores[j + 1] == scores[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(scores))
    r[order] = ranks
    u = r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def slice_metrics(
    module: Any, preprocessor: Preprocessor, x: np.ndarray, y: np.ndarray
) -> list[SliceMetrics]:
    """AUC, FPR and TPR (threshold 0.5) per value of every categorical feature.

    Rows whose value was outside the training vocabulary (all-zero one-hot) form the slice
    ``"<other>"``.

    Example:
        >>> [s.value for s in slice_metrics(module, pre, x_val, y_val)][:2]
        ['atm', 'electronics']
    """
    probs = _predict(module)(x)
    pred = probs >= THRESHOLD
    out: list[SliceMetrics] = []
    groups = dict(feature_groups(preprocessor))
    for cat in preprocessor.categorical:
        cols = x[:, groups[cat.name]]
        masks = [(v, cols[:, i] >= 0.5) for i, v in enumerate(cat.vocabulary)]
        masks.append(("<other>", cols.sum(axis=1) < 0.5))
        for value, mask in masks:
            if not mask.any():
                continue
            ys, ps, pr = y[mask] >= 0.5, probs[mask], pred[mask]
            neg, pos = int((~ys).sum()), int(ys.sum())
            out.append(
                SliceMetrics(
                    feature=cat.name,
                    value=value,
                    rows=int(mask.sum()),
                    positives=pos,
                    auc=_auc(ys.astype("float64"), ps),
                    fpr=float((pr & ~ys).sum() / neg) if neg else None,
                    tpr=float((pr & ys).sum() / pos) if pos else None,
                )
            )
    return out
