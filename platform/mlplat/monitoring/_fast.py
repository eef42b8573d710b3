"""The fast drift path: Evidently's default per-column tests on a cached reference profile.

Evidently 0.7 picks a test per column from the reference size and the number of distinct
values (``evidently.legacy.calculations.stattests.registry._get_default_stattest``):

====================  =========================================  ===========================
reference rows        numerical (> 5 distinct / ≤ 5 distinct)     categorical (> 2 / ≤ 2)
====================  =========================================  ===========================
≤ 1 000               K-S p-value / chi-square (Z-test if ≤ 2)    chi-square / Z-test
> 1 000               Wasserstein (normed) / Jensen-Shannon       Jensen-Shannon
====================  =========================================  ===========================

p-value tests drift when ``p ≤ / < monitoring.p_value``; distances when ``≥
monitoring.distance_threshold`` (Evidently's defaults are 0.05 and 0.1, as in platform.yaml).
``ReferenceProfile`` caches what the tests need — sorted numeric values, standard deviations,
category counts and PSI bins — once per model version, so a window costs one sort per numeric
column and one ``value_counts`` per categorical column. PSI (quantile bins of the reference) is
reported next to every numeric column's verdict for people used to it; it does not decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlplat.contracts.v1 import FeatureDrift

MISSING_METHOD = "missing: no values in the current window"
"""``FeatureDrift.method`` of a feature the traffic no longer carries (score 1.0, drifted)."""
EVIDENTLY_SIZE_SWITCH = 1000
"""At most this many reference rows: p-value tests; above: distances (Evidently's rule)."""
PSI_BINS = 10
_EPS = 1e-4


@dataclass
class ColumnProfile:
    """What the tests need to know about one reference column (cached per model version)."""

    name: str
    kind: str  # "numerical" | "categorical"
    n: int
    values: np.ndarray | None = None
    """Sorted reference values (numerical)."""
    std: float = 0.0
    psi_edges: list[float] = field(default_factory=list)
    psi_ref: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """Distinct value → count (categorical, and numerical with few distinct values)."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "n": self.n,
                "values": None if self.values is None else self.values.tolist(),
                "std": self.std, "psi_edges": self.psi_edges, "psi_ref": self.psi_ref,
                "counts": self.counts}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ColumnProfile:
        values = d.get("values")
        return cls(name=d["name"], kind=d["kind"], n=int(d["n"]),
                   values=None if values is None else np.asarray(values, dtype=float),
                   std=float(d["std"]), psi_edges=list(d["psi_edges"]),
                   psi_ref=list(d["psi_ref"]), counts=dict(d["counts"]))


def _key(value: Any) -> str:
    """Categories compare as strings (JSON round-trips keep them equal)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass
class ReferenceProfile:
    """Cached per-column statistics of a model version's training reference.

    Example:
        >>> profile = ReferenceProfile.from_frame(training_sample, ["amount"], ["country"])
        >>> sorted(profile.columns)
        ['amount', 'country']
    """

    columns: dict[str, ColumnProfile]
    rows: int

    @property
    def numerical(self) -> list[str]:
        return [c for c, p in self.columns.items() if p.kind == "numerical"]

    @property
    def categorical(self) -> list[str]:
        return [c for c, p in self.columns.items() if p.kind == "categorical"]

    @classmethod
    def from_frame(cls, frame: Any, numerical: list[str], categorical: list[str]) -> ReferenceProfile:
        """Profile a pandas DataFrame (NaN/inf are left out of each column, as Evidently does)."""
        import pandas as pd

        columns: dict[str, ColumnProfile] = {}
        for name in numerical:
            col = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
            col = np.sort(col[np.isfinite(col)])
            distinct, counts = np.unique(col, return_counts=True)
            edges: Any = np.unique(np.quantile(col, np.linspace(0, 1, PSI_BINS + 1))) if len(col) else []
            ref_share = (np.histogram(col, bins=edges)[0] / max(len(col), 1)
                         if len(edges) > 1 else np.array([1.0]))
            columns[name] = ColumnProfile(
                name=name, kind="numerical", n=len(col), values=col,
                std=float(np.std(col)) if len(col) else 0.0,
                psi_edges=[float(e) for e in edges], psi_ref=[float(s) for s in ref_share],
                counts=({_key(v): int(c) for v, c in zip(distinct, counts, strict=True)}
                        if len(distinct) <= 20 else {}),
            )
        for name in categorical:
            col = frame[name].dropna()
            cat_counts: dict[str, int] = {}
            for k, v in col.value_counts().items():
                cat_counts[_key(k)] = cat_counts.get(_key(k), 0) + int(v)
            columns[name] = ColumnProfile(name=name, kind="categorical", n=len(col),
                                          counts=cat_counts)
        return cls(columns=columns, rows=len(frame))

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": [c.to_json() for c in self.columns.values()]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReferenceProfile:
        cols = [ColumnProfile.from_json(c) for c in d["columns"]]
        return cls(columns={c.name: c for c in cols}, rows=int(d["rows"]))


def _method(name: str, threshold: float) -> str:
    return f"{name} (threshold {threshold})"


def psi(profile: ColumnProfile, current: np.ndarray, is_sorted: bool = False) -> float | None:
    """Population stability index of ``current`` over the reference's quantile bins."""
    if len(profile.psi_edges) < 2 or len(current) == 0:
        return None
    edges = np.asarray(profile.psi_edges)
    values = current if is_sorted else np.sort(current)
    # Bins are [e0, e1), …, [e_k-1, e_k]; values outside the reference range count in the
    # outer bins.
    cuts = np.searchsorted(values, edges[1:-1], side="left")
    counts = np.diff(np.concatenate([[0], cuts, [len(values)]]))
    cur = counts / len(values)
    ref = np.asarray(profile.psi_ref)
    ref, cur = np.clip(ref, _EPS, None), np.clip(cur, _EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _proportions(ref_counts: dict[str, int], cur_counts: dict[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    keys = sorted(set(ref_counts) | set(cur_counts))
    ref = np.array([ref_counts.get(k, 0) for k in keys], dtype=float)
    cur = np.array([cur_counts.get(k, 0) for k in keys], dtype=float)
    return keys, ref, cur


def wasserstein_sorted(ref: np.ndarray, cur: np.ndarray) -> float:
    """First Wasserstein distance of two *sorted* samples: ∫|F_ref − F_cur| dx, the same sum
    scipy's ``wasserstein_distance`` computes, without sorting again: the merged order comes
    from one ``searchsorted`` of the cached reference into the window."""
    n_r, n_c = len(ref), len(cur)
    ref_pos = np.arange(n_r) + np.searchsorted(cur, ref, side="left")
    is_ref = np.zeros(n_r + n_c, dtype=bool)
    is_ref[ref_pos] = True
    merged = np.empty(n_r + n_c)
    merged[ref_pos] = ref
    merged[~is_ref] = cur
    # Within a run of equal values the step width is 0, so how ties are ordered never matters.
    from_ref = np.cumsum(is_ref)[:-1]
    cdf_ref = from_ref / n_r
    cdf_cur = (np.arange(1, n_r + n_c) - from_ref) / n_c
    return float(np.dot(np.abs(cdf_ref - cdf_cur), np.diff(merged)))


def _chi_square(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.stats import chisquare

    f_exp = ref * (cur.sum() / ref.sum())
    return float(chisquare(cur, f_exp)[1])


def _z_test(keys: list[str], ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.stats import norm

    if len(keys) == 1:
        return 1.0
    # Evidently codes the first (sorted) category 0 and every other one 1.
    n1, n2 = ref.sum(), cur.sum()
    p1, p2 = (n1 - ref[0]) / n1, (n2 - cur[0]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denom = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if denom == 0:
        return 1.0 if p1 == p2 else 0.0
    return float(2 * (1 - norm.cdf(abs((p1 - p2) / denom))))


def _jensen_shannon(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))


def column_drift(profile: ColumnProfile, current: Any, *, p_value: float,
                 distance_threshold: float) -> FeatureDrift:
    """One column's drift with Evidently's default test for its kind and size.

    Args:
        profile: The cached reference column.
        current: The window's values (array or Series; missing values are dropped).
        p_value: Significance of the p-value tests (``monitoring.p_value``).
        distance_threshold: Drift threshold of the distance tests
            (``monitoring.distance_threshold``).

    Example:
        >>> column_drift(profile.columns["amount"], window["amount"], p_value=0.05,
        ...              distance_threshold=0.1).drifted
        True
    """
    from scipy import stats

    small = profile.n <= EVIDENTLY_SIZE_SWITCH
    if profile.kind == "numerical":
        cur = np.asarray(current, dtype=float)
        cur = np.sort(cur[np.isfinite(cur)])
        if len(cur) == 0 or profile.values is None or profile.n == 0:
            return FeatureDrift(score=1.0, method=MISSING_METHOD, drifted=True)
        many = len(profile.counts) == 0 or len(profile.counts) > 5
        if not many:
            cur_keys, cur_n = np.unique(cur, return_counts=True)
            cur_counts = {_key(v): int(c) for v, c in zip(cur_keys, cur_n, strict=True)}
            many = len(set(profile.counts) | set(cur_counts)) > 5
        value_psi = psi(profile, cur, is_sorted=True)
        if many and small:
            p = float(stats.ks_2samp(profile.values, cur)[1])
            return FeatureDrift(score=p, method=_method("K-S p_value", p_value),
                                drifted=p <= p_value, psi=value_psi)
        if many:
            norm = max(profile.std, 0.001)
            d = wasserstein_sorted(profile.values, cur) / norm
            return FeatureDrift(score=d, method=_method("Wasserstein distance (normed)",
                                                        distance_threshold),
                                drifted=d >= distance_threshold, psi=value_psi)
        keys, ref, cnt = _proportions(profile.counts, cur_counts)
        return _categorical_verdict(keys, ref, cnt, small, p_value, distance_threshold, value_psi)
    import pandas as pd

    series = pd.Series(current).dropna()
    if len(series) == 0 or profile.n == 0:
        return FeatureDrift(score=1.0, method=MISSING_METHOD, drifted=True)
    counts: dict[str, int] = {}
    for k, v in series.value_counts().items():  # distinct values only: cheap
        counts[_key(k)] = counts.get(_key(k), 0) + int(v)
    keys, ref, cnt = _proportions(profile.counts, counts)
    return _categorical_verdict(keys, ref, cnt, small, p_value, distance_threshold, None)


def _categorical_verdict(keys: list[str], ref: np.ndarray, cur: np.ndarray, small: bool,
                         p_value: float, distance_threshold: float,
                         value_psi: float | None) -> FeatureDrift:
    if not small:
        d = _jensen_shannon(ref, cur)
        return FeatureDrift(score=d, method=_method("Jensen-Shannon distance", distance_threshold),
                            drifted=d >= distance_threshold, psi=value_psi)
    if len(keys) > 2:
        p = _chi_square(ref, cur)
        return FeatureDrift(score=p, method=_method("chi-square p_value", p_value),
                            drifted=p < p_value, psi=value_psi)
    p = _z_test(keys, ref, cur)
    return FeatureDrift(score=p, method=_method("Z-test p_value", p_value), drifted=p < p_value,
                        psi=value_psi)


def fast_drift(profile: ReferenceProfile, current: Any, *, p_value: float,
               distance_threshold: float) -> dict[str, FeatureDrift]:
    """Per-feature drift of a window (a pandas DataFrame) against the cached reference.

    A feature absent from ``current`` or without any value in it is reported drifted with
    method ``MISSING_METHOD`` and score 1.0.

    Example:
        >>> drift = fast_drift(profile, window_frame, p_value=0.05, distance_threshold=0.1)
        >>> sorted(n for n, f in drift.items() if f.drifted)
        ['amount']
    """
    out: dict[str, FeatureDrift] = {}
    for name, col in profile.columns.items():
        if name not in current.columns:
            out[name] = FeatureDrift(score=1.0, method=MISSING_METHOD, drifted=True)
            continue
        values = current[name]
        if col.kind == "numerical":
            import pandas as pd

            values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        out[name] = column_drift(col, values, p_value=p_value,
                                 distance_threshold=distance_threshold)
    return out


def score_drift(reference: np.ndarray, current: np.ndarray, *, p_value: float,
                distance_threshold: float) -> FeatureDrift:
    """Prediction drift: the model's scores in a window vs its reference scores, same tests."""
    import pandas as pd

    ref_frame = pd.DataFrame({"score": np.asarray(reference, dtype=float)})
    prof = ReferenceProfile.from_frame(ref_frame, ["score"], []).columns["score"]
    return column_drift(prof, np.asarray(current, dtype=float), p_value=p_value,
                        distance_threshold=distance_threshold)
