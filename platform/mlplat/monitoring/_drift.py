"""Drift of served traffic against a model's training reference, computed with Evidently.

``DriftMonitor`` is the plain, Ray-free logic behind the ``mlplat-drift-monitor`` actor: the
router feeds it sampled request rows (fire-and-forget, bounded buffer with counted drops), and
``report`` runs Evidently 0.7 ``ValueDrift`` (the per-column metric ``DataDriftPreset`` is made
of) on the current window against the reference, then opens the next window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlplat.contracts.v1 import DriftReport, FeatureDrift
from mlplat.errors import NotFoundError, UserError, did_you_mean

DEFAULT_MAX_BUFFER_ROWS = 10_000
"""Rows kept per model version between reports (Evidently needs seconds for 10k × 20)."""
DEFAULT_MAX_REFERENCE_ROWS = 10_000
DEFAULT_MIN_ROWS = 100
"""Fewer rows than this make the statistical tests too noisy to act on."""
MISSING_METHOD = "missing: no values in the current window"
"""``FeatureDrift.method`` of a feature the traffic no longer carries (score 1.0, drifted)."""
DEFAULT_DRIFT_SHARE = 0.5
"""Evidently's default: the dataset drifts when at least half of the features drift."""


class WindowStats(BaseModel):
    """The state of one model version's current window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buffered_rows: int = Field(description="Rows waiting for the next report.")
    dropped_rows: int = Field(description="Rows dropped because the buffer was full (lifetime).")
    reference_rows: int = Field(description="Rows in the reference (0 = no reference yet).")
    window_start: datetime = Field(description="When the current window opened (UTC).")
    mean_score: float | None = Field(default=None, description="Mean prediction score in the window.")


class DriftMonitorStats(BaseModel):
    """Counters of the whole monitor (``DriftMonitor.stats``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buffered_rows: int
    dropped_rows: int
    rejected_batches: int = Field(description="record() calls refused for malformed input.")
    reports_made: int
    windows: dict[str, WindowStats] = Field(description="Per '<model>/<version>'.")


@dataclass
class _Window:
    opened_at: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    dropped: int = 0


@dataclass(frozen=True)
class _Reference:
    frame: Any  # pandas.DataFrame; typed loosely so pandas is imported only when used
    numerical: list[str]
    categorical: list[str]

    @property
    def features(self) -> list[str]:
        return [*self.numerical, *self.categorical]


def _key(model: str, version: str | int) -> tuple[str, str]:
    if not isinstance(model, str) or not model:
        raise UserError(f"model must be a non-empty string, got {model!r}.")
    return model, str(version)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class DriftMonitor:
    """Per-window data drift of served traffic vs the training reference.

    Thread-safe: the actor serves ``record`` calls while a report is being computed.

    Args:
        clock: Seconds since the epoch; window bounds come from it (a fake in tests).
        max_buffer_rows: Rows buffered per model version; more are dropped and counted.
        max_reference_rows: Larger references are down-sampled (seeded) to this many rows.
        drift_share: Share of drifted features at which the dataset counts as drifted.

    Example:
        >>> mon = DriftMonitor()
        >>> mon.set_reference("fraud", 2, training_rows)
        10000
        >>> mon.record("fraud", 2, served_rows, scores)
        500
        >>> mon.report("fraud", 2).share_drifted
        0.0
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_buffer_rows: int = DEFAULT_MAX_BUFFER_ROWS,
        max_reference_rows: int = DEFAULT_MAX_REFERENCE_ROWS,
        drift_share: float = DEFAULT_DRIFT_SHARE,
    ) -> None:
        if max_buffer_rows < 1 or max_reference_rows < 1:
            raise UserError("max_buffer_rows and max_reference_rows must be at least 1.")
        if not 0 < drift_share <= 1:
            raise UserError(f"drift_share must be in (0, 1], got {drift_share}.")
        self._clock = clock
        self.max_buffer_rows = max_buffer_rows
        self.max_reference_rows = max_reference_rows
        self.drift_share = drift_share
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._references: dict[tuple[str, str], _Reference] = {}
        self._latest: dict[tuple[str, str], DriftReport] = {}
        self._reports_made = 0
        self._rejected = 0

    # ------------------------------------------------------------------ inputs

    def set_reference(
        self,
        model: str,
        version: str | int,
        rows: list[dict[str, Any]],
        features: list[str] | None = None,
    ) -> int:
        """Set the reference (usually a sample of the training dataset) for a model version.

        Numeric columns are compared as numerical features, everything else as categorical.

        Args:
            model: Model name, e.g. ``fraud``.
            version: Model version.
            rows: Reference rows, one dict of feature → value per row.
            features: Columns to monitor; defaults to every column of ``rows``.

        Returns:
            Reference rows kept (down-sampled to ``max_reference_rows``).

        Raises:
            UserError: no rows, rows that are not dicts, or ``features`` not in the rows.

        Example:
            >>> DriftMonitor().set_reference("fraud", "2", [{"amount": 12.5, "country": "DE"}] * 200)
            200
        """
        import pandas as pd

        key = _key(model, version)
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise UserError(
                f"Reference for {key[0]}/{key[1]} must be a non-empty list of dicts "
                "(feature → value), e.g. a sample of the training dataset's rows."
            )
        frame = pd.DataFrame.from_records(rows)
        if features is not None:
            missing = [f for f in features if f not in frame.columns]
            if missing:
                raise UserError(
                    f"Features {missing} are not columns of the reference rows "
                    f"({sorted(map(str, frame.columns))})."
                )
            frame = frame[features]
        empty = [str(c) for c in frame.columns if frame[c].isna().all()]
        if empty:
            raise UserError(
                f"Reference columns {empty} have no values; drop them (features=[...]) or fix "
                "the reference sample."
            )
        if len(frame) > self.max_reference_rows:
            frame = frame.sample(n=self.max_reference_rows, random_state=0)
        frame = frame.reset_index(drop=True)
        numerical = [
            str(c) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        ]
        categorical = [str(c) for c in frame.columns if str(c) not in numerical]
        with self._lock:
            self._references[key] = _Reference(frame, numerical, categorical)
            self._windows.setdefault(key, _Window(opened_at=self._clock()))
        return len(frame)

    def record(
        self, model: str, version: str | int, rows: list[dict[str, Any]], scores: list[float]
    ) -> int:
        """Buffer sampled served rows and their prediction scores for the current window.

        Called fire-and-forget by the router; when the buffer is full the extra rows are dropped
        and counted rather than blocking or growing without bound.

        Args:
            model: Model name.
            version: Model version that served the rows.
            rows: Request feature rows (dicts). Keys not in the reference are ignored.
            scores: One prediction score per row.

        Returns:
            Rows accepted (the rest were dropped).

        Raises:
            UserError: rows are not dicts, or ``scores`` has a different length.

        Example:
            >>> DriftMonitor(max_buffer_rows=1).record("fraud", 2, [{"a": 1}, {"a": 2}], [0.1, 0.9])
            1
        """
        key = _key(model, version)
        if not all(isinstance(r, dict) for r in rows) or len(scores) != len(rows):
            with self._lock:
                self._rejected += 1
            raise UserError(
                f"record({key[0]!r}, {key[1]!r}) needs a list of dict rows and one score per row; "
                f"got {len(rows)} rows and {len(scores)} scores."
            )
        with self._lock:
            window = self._windows.setdefault(key, _Window(opened_at=self._clock()))
            room = max(0, self.max_buffer_rows - len(window.rows))
            accepted = min(room, len(rows))
            window.rows.extend(rows[:accepted])
            window.scores.extend(float(s) for s in scores[:accepted])
            window.dropped += len(rows) - accepted
        return accepted

    # ------------------------------------------------------------------ outputs

    def report(self, model: str, version: str | int, min_rows: int = DEFAULT_MIN_ROWS) -> DriftReport:
        """Compute drift of the current window vs the reference, then open the next window.

        Args:
            model: Model name.
            version: Model version.
            min_rows: Fewest buffered rows a report may be computed from.

        Returns:
            A ``DriftReport``: per-feature Evidently score, method and verdict, the share of
            drifted features and the dataset-level verdict.

        Raises:
            NotFoundError: no reference was set for this model version.
            UserError: the window has fewer than ``min_rows`` rows.

        Example:
            >>> r = mon.report("fraud", 2)
            >>> sorted(name for name, f in r.features.items() if f.drifted)
            ['amount']
        """
        key = _key(model, version)
        min_rows = max(1, min_rows)  # Evidently cannot test an empty window
        with self._lock:
            ref = self._references.get(key)
            if ref is None:
                known = [f"{m}/{v}" for m, v in self._references]
                raise NotFoundError(
                    f"No drift reference for {key[0]}/{key[1]}."
                    f"{did_you_mean(f'{key[0]}/{key[1]}', known)} Set one with "
                    f"set_reference('{key[0]}', '{key[1]}', rows) (a sample of the training "
                    f"dataset). References held: {sorted(known)}."
                )
            window = self._windows[key]
            n = len(window.rows)
            if n < min_rows:
                raise UserError(
                    f"The current window of {key[0]}/{key[1]} has {n} rows; a drift report needs "
                    f"at least {min_rows}. Wait for {min_rows - n} more sampled requests, or pass "
                    "a smaller min_rows."
                )
            rows, start = list(window.rows), window.opened_at
        # Evidently runs outside the lock so record() keeps flowing during the computation.
        features = self._evidently_drift(ref, rows)
        end = self._clock()
        drifted = sum(f.drifted for f in features.values())
        share = drifted / len(features) if features else 0.0
        report = DriftReport(
            model=key[0], version=key[1], window_start=_utc(start), window_end=_utc(end),
            reference_rows=len(ref.frame), current_rows=n, features=features,
            share_drifted=share, dataset_drift=bool(features) and share >= self.drift_share,
        )
        with self._lock:
            # Rows that arrived during the computation belong to the next window.
            window.rows = window.rows[n:]
            window.scores = window.scores[n:]
            window.opened_at = end
            self._latest[key] = report
            self._reports_made += 1
        return report

    def latest_report(self, model: str, version: str | int) -> DriftReport | None:
        """The last report computed for a model version, or None.

        Example:
            >>> DriftMonitor().latest_report("fraud", 2) is None
            True
        """
        with self._lock:
            return self._latest.get(_key(model, version))

    def stats(self) -> DriftMonitorStats:
        """Buffered rows, drops and reports, in total and per window.

        Example:
            >>> DriftMonitor().stats().reports_made
            0
        """
        with self._lock:
            windows = {}
            for (m, v), w in self._windows.items():
                ref = self._references.get((m, v))
                windows[f"{m}/{v}"] = WindowStats(
                    buffered_rows=len(w.rows), dropped_rows=w.dropped,
                    reference_rows=0 if ref is None else len(ref.frame),
                    window_start=_utc(w.opened_at),
                    mean_score=sum(w.scores) / len(w.scores) if w.scores else None,
                )
            return DriftMonitorStats(
                buffered_rows=sum(w.buffered_rows for w in windows.values()),
                dropped_rows=sum(w.dropped_rows for w in windows.values()),
                rejected_batches=self._rejected, reports_made=self._reports_made,
                windows=windows,
            )

    # ------------------------------------------------------------------ Evidently

    def _evidently_drift(self, ref: _Reference, rows: list[dict[str, Any]]) -> dict[str, FeatureDrift]:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

        current = pd.DataFrame.from_records(rows).reindex(columns=ref.features)
        for col in ref.numerical:
            # A non-numeric value in a numeric feature is itself a sign of trouble; treat it as
            # missing rather than failing the whole report.
            current[col] = pd.to_numeric(current[col], errors="coerce")
        # Evidently refuses an all-missing column; a feature the traffic stopped sending is the
        # loudest drift there is, so it is reported as drifted instead of failing the report.
        empty = [c for c in ref.features if current[c].isna().all()]
        missing = {c: FeatureDrift(score=1.0, method=MISSING_METHOD, drifted=True) for c in empty}
        numerical = [c for c in ref.numerical if c not in missing]
        categorical = [c for c in ref.categorical if c not in missing]
        if not numerical and not categorical:
            return missing
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        # One ValueDrift per feature is what DataDriftPreset expands to (same automatic choice
        # of test and threshold per column type and size), minus the preset's dataset-level
        # HTML table, whose plotly rendering was about half the report's time here.
        snapshot = Report(
            [ValueDrift(column=col) for col in [*numerical, *categorical]], include_tests=True
        ).run(
            Dataset.from_pandas(current.drop(columns=empty), data_definition=definition),
            Dataset.from_pandas(ref.frame.drop(columns=empty), data_definition=definition),
        )
        features = _parse_snapshot(snapshot.dict())
        return {c: missing.get(c) or features[c] for c in ref.features}


def _parse_snapshot(result: dict[str, Any]) -> dict[str, FeatureDrift]:
    """Per-column ``ValueDrift`` score/method plus its test's pass/fail from a Report dict.

    Evidently 0.7 puts the score in the metric's ``value`` and the verdict in a test bound to
    the metric id (status FAIL = drift detected; it already knows whether the method is a
    p-value, where low means drift, or a distance, where high does).
    """
    verdicts = {
        t["metric_config"]["metric_id"]: str(getattr(t["status"], "value", t["status"])) == "FAIL"
        for t in result.get("tests", [])
        if t.get("id") == "drift"
    }
    features: dict[str, FeatureDrift] = {}
    for m in result["metrics"]:
        config = m["config"]
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        score = float(m["value"])
        features[config["column"]] = FeatureDrift(
            # NaN (e.g. an all-missing column) cannot be exported or compared: report it as
            # maximal drift so a person looks at it.
            score=score if math.isfinite(score) else 1.0,
            method=f"{config.get('method')} (threshold {config.get('threshold')})",
            drifted=verdicts.get(m["id"], False) or not math.isfinite(score),
        )
    return features
