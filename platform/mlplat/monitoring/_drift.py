"""Drift of served traffic against a model version's training reference, per tumbling window.

``DriftMonitor`` is the plain, Ray-free logic behind the ``mlplat-drift-monitor`` actor: the
router feeds it sampled request rows (fire-and-forget, bounded buffer with counted drops);
``tick`` closes every window older than ``drift_window_s`` and ``report`` closes one now. A
report runs the fast path (``_fast``: Evidently's default per-column tests on a cached reference
profile) plus prediction drift; the full Evidently report for people is written afterwards by
``write_evidently_report``. Everything that must survive a restart is in a ``DriftStore``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlplat.config import MonitoringPolicy
from mlplat.contracts.v1 import DriftReport, FeatureDrift
from mlplat.errors import NotFoundError, UserError, did_you_mean
from mlplat.monitoring._fast import MISSING_METHOD, ReferenceProfile, fast_drift, score_drift
from mlplat.monitoring._store import DriftStore

DEFAULT_MAX_BUFFER_ROWS = 100_000
"""Rows kept per model version and window (the fast path does 100k × 20 in well under 2 s)."""
DEFAULT_MAX_REFERENCE_ROWS = 10_000
DEFAULT_MIN_ROWS = 100
"""Fewer rows than this make the statistical tests too noisy to act on."""
SERVED_ROWS_PER_WINDOW = 1_000
"""Rows of each closed window kept (seeded sample) for the promotion drift gate."""
ARRIVED_COLUMN = "_mlplat_arrived_at"
"""Arrival time (epoch s) of each served row kept for the promotion drift gate."""
DEFAULT_GATE_LOOKBACK_S = 7 * 86_400.0
"""Served traffic the promotion drift gate compares a candidate with (platform.yaml:
``monitoring_timing.drift_gate_lookback_s``)."""
DEFAULT_DRIFT_SHARE = 0.5
"""Evidently's default: the dataset drifts when at least half of the features drift."""
EVIDENTLY_MAX_ROWS = 10_000
"""Rows of a window given to the full Evidently report (seeded sample; it is for people)."""

__all__ = ["DEFAULT_MAX_BUFFER_ROWS", "DEFAULT_MIN_ROWS", "MISSING_METHOD", "DriftMonitor",
           "DriftMonitorStats", "WindowStats"]


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
    chunks: list[Any] = field(default_factory=list)  # pandas DataFrames, one per batch
    arrived: list[float] = field(default_factory=list)  # when each chunk was recorded
    scores: list[float] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    n: int = 0
    dropped: int = 0
    last_seq: int = 0


@dataclass
class _Reference:
    profile: ReferenceProfile
    frame: Any  # pandas.DataFrame sample for the Evidently report
    scores: np.ndarray | None

    @property
    def numerical(self) -> list[str]:
        return self.profile.numerical

    @property
    def categorical(self) -> list[str]:
        return self.profile.categorical

    @property
    def features(self) -> list[str]:
        return list(self.profile.columns)


def _key(model: str, version: str | int) -> tuple[str, str]:
    if not isinstance(model, str) or not model:
        raise UserError(f"model must be a non-empty string, got {model!r}.")
    return model, str(version)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _records(frame: Any) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ClosedWindow:
    """A report plus what the full Evidently report needs (the actor writes it off-path)."""

    report: DriftReport
    reference: Any
    current: Any
    numerical: list[str]
    categorical: list[str]
    scheduled_end: float
    """When the window was due to close (window lag = publish time − this)."""


class DriftMonitor:
    """Per-window data and prediction drift of served traffic vs the training reference.

    Thread-safe: the actor serves ``record`` calls while a report is being computed.

    Args:
        clock: Seconds since the epoch; window bounds come from it (a fake in tests).
        max_buffer_rows: Rows buffered per model version and window; more are dropped, counted.
        max_reference_rows: Larger references are down-sampled (seeded) to this many rows.
        drift_share: Share of drifted features at which the dataset counts as drifted.
        policy: ``cfg.monitoring`` (test thresholds, warning/critical shares); defaults to
            Evidently's defaults (p 0.05, distance 0.1) and no severities.
        window_s: Tumbling window length for ``tick`` (``monitoring_timing.drift_window_s``).
        store: Where state survives a restart; defaults to an in-memory store.
        report_dir: Folder for the full Evidently reports; None writes none.

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
        *,
        policy: MonitoringPolicy | None = None,
        window_s: float | None = None,
        store: DriftStore | None = None,
        report_dir: Path | None = None,
        gate_lookback_s: float = DEFAULT_GATE_LOOKBACK_S,
    ) -> None:
        if max_buffer_rows < 1 or max_reference_rows < 1:
            raise UserError("max_buffer_rows and max_reference_rows must be at least 1.")
        if not 0 < drift_share <= 1:
            raise UserError(f"drift_share must be in (0, 1], got {drift_share}.")
        self._clock = clock
        self.max_buffer_rows = max_buffer_rows
        self.max_reference_rows = max_reference_rows
        self.drift_share = drift_share
        self.policy = policy
        self.p_value = policy.p_value if policy else 0.05
        self.distance_threshold = policy.distance_threshold if policy else 0.1
        self.window_s = window_s
        self.report_dir = report_dir
        self.gate_lookback_s = gate_lookback_s
        self._store = store or DriftStore(":memory:")
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._references: dict[tuple[str, str], _Reference] = {}
        self._latest: dict[tuple[str, str], DriftReport] = {}
        self._rejected = 0
        self._restore()

    @property
    def store(self) -> DriftStore:
        return self._store

    def has_reference(self, model: str, version: str | int) -> bool:
        """Whether ``model``/``version`` has a training reference to compare windows with."""
        with self._lock:
            return _key(model, version) in self._references

    def _restore(self) -> None:
        """Rebuild references, open windows and latest reports from the store (after a restart)."""
        import pandas as pd

        for model, version, profile, frame, scores in self._store.references():
            self._references[(model, version)] = _Reference(
                ReferenceProfile.from_json(profile), pd.DataFrame.from_records(frame),
                None if scores is None else np.asarray(scores, dtype=float))
        for model, version, opened_at, dropped in self._store.windows():
            window = _Window(opened_at=opened_at, dropped=dropped)
            for seq, rows, scores, ids in self._store.samples(model, version):
                window.chunks.append(pd.DataFrame.from_records(rows))
                window.arrived.append(opened_at)  # the store keeps no arrival time: the oldest
                window.scores.extend(scores)
                window.ids.extend(ids if ids is not None else [None] * len(rows))
                window.n += len(rows)
                window.last_seq = seq
            self._windows[(model, version)] = window
        for key, body in self._store.latest_reports().items():
            self._latest[key] = DriftReport.model_validate(body)

    def _window(self, key: tuple[str, str]) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(opened_at=self._clock())
            self._store.open_window(key[0], key[1], window.opened_at)
        return window

    # ------------------------------------------------------------------ inputs

    def set_reference(
        self,
        model: str,
        version: str | int,
        rows: list[dict[str, Any]],
        features: list[str] | None = None,
        scores: list[float] | None = None,
    ) -> int:
        """Set (and store) the reference — a sample of the training data — of a model version.

        Numeric columns are compared as numerical features, everything else as categorical.
        The profile (sorted values, category counts, PSI bins) is computed once here and kept in
        the store, so it survives a restart and every window reuses it.

        Args:
            model: Model name, e.g. ``fraud``.
            version: Model version.
            rows: Reference rows, one dict of feature → value per row.
            features: Columns to monitor; defaults to every column of ``rows``.
            scores: The model's scores on ``rows`` (reference for prediction drift); without
                them a version's first closed window is its prediction baseline.

        Returns:
            Reference rows kept (down-sampled to ``max_reference_rows``).

        Raises:
            UserError: no rows, rows that are not dicts, ``features`` not in the rows, or a
                score count that differs from the row count.

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
        if scores is not None and len(scores) != len(rows):
            raise UserError(f"Reference scores: {len(scores)} scores for {len(rows)} rows; give "
                            "one score per row or none.")
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
        score_arr = None if scores is None else pd.Series(scores, dtype=float)
        if len(frame) > self.max_reference_rows:
            frame = frame.sample(n=self.max_reference_rows, random_state=0)
            if score_arr is not None:
                score_arr = score_arr.loc[frame.index]
        frame = frame.reset_index(drop=True)
        numerical = [
            str(c) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        ]
        categorical = [str(c) for c in frame.columns if str(c) not in numerical]
        profile = ReferenceProfile.from_frame(frame, numerical, categorical)
        ref_scores = None if score_arr is None else score_arr.to_numpy(dtype=float)
        self._store.put_reference(key[0], key[1], profile.to_json(), _records(frame),
                                  None if ref_scores is None else ref_scores.tolist(), self._clock())
        with self._lock:
            self._references[key] = _Reference(profile, frame, ref_scores)
            self._window(key)
        return len(frame)

    def record(
        self, model: str, version: str | int, rows: list[dict[str, Any]], scores: list[float],
        ids: list[str] | None = None,
    ) -> int:
        """Buffer sampled served rows and their prediction scores for the current window.

        Called fire-and-forget by the router; when the buffer is full the extra rows are dropped
        and counted rather than blocking or growing without bound.

        Args:
            model: Model name.
            version: Model version that served the rows.
            rows: Request feature rows (dicts). Keys not in the reference are ignored.
            scores: One prediction score per row.
            ids: Optional request ids (e.g. transaction ids) that later outcomes join on.

        Returns:
            Rows accepted (the rest were dropped).

        Raises:
            UserError: rows are not dicts, or ``scores``/``ids`` have a different length.

        Example:
            >>> DriftMonitor(max_buffer_rows=1).record("fraud", 2, [{"a": 1}, {"a": 2}], [0.1, 0.9])
            1
        """
        import pandas as pd

        key = _key(model, version)
        if (not all(isinstance(r, dict) for r in rows) or len(scores) != len(rows)
                or (ids is not None and len(ids) != len(rows))):
            with self._lock:
                self._rejected += 1
            raise UserError(
                f"record({key[0]!r}, {key[1]!r}) needs a list of dict rows and one score (and id, "
                f"if given) per row; got {len(rows)} rows, {len(scores)} scores"
                f"{'' if ids is None else f', {len(ids)} ids'}."
            )
        with self._lock:
            window = self._window(key)
            room = max(0, self.max_buffer_rows - window.n)
            accepted = min(room, len(rows))
            kept, kept_scores = rows[:accepted], [float(s) for s in scores[:accepted]]
            kept_ids = None if ids is None else [str(i) for i in ids[:accepted]]
            if accepted:
                window.chunks.append(pd.DataFrame.from_records(kept))
                window.arrived.append(self._clock())
                window.scores.extend(kept_scores)
                window.ids.extend(kept_ids if kept_ids is not None else [None] * accepted)
                window.n += accepted
            window.dropped += len(rows) - accepted
            seq = self._store.add_samples(key[0], key[1], kept, kept_scores, kept_ids,
                                          len(rows) - accepted)
            window.last_seq = max(window.last_seq, seq)
        return accepted

    def record_outcomes(self, model: str, outcomes: list[dict[str, Any]]) -> int:
        """Store outcomes that arrived after the prediction (labels, chargebacks, verdicts).

        Each outcome is ``{"id": <transaction id>, "label": bool, "value_usd": float,
        "source": "chargeback" | "review" | ...}``; they join the window's predictions on
        ``id`` (see ``kpi_report``). A later outcome for the same id replaces the earlier one.

        Returns:
            Outcomes stored.

        Raises:
            UserError: an outcome without ``id``/``label`` or with a non-numeric value.

        Example:
            >>> mon.record_outcomes("fraud", [{"id": "tx-1", "label": True, "value_usd": 120.0,
            ...                                "source": "chargeback"}])
            1
        """
        _key(model, "0")
        parsed: list[tuple[str, int, float, str]] = []
        for i, o in enumerate(outcomes):
            if not isinstance(o, dict) or "id" not in o or "label" not in o:
                raise UserError(f"Outcome #{i} must be a dict with 'id' and 'label' (and "
                                f"'value_usd', 'source'); got {o!r}.")
            try:
                value = float(o.get("value_usd", 0.0))
            except (TypeError, ValueError) as exc:
                raise UserError(f"Outcome #{i} ({o['id']}): value_usd={o.get('value_usd')!r} "
                                "is not a number.") from exc
            parsed.append((str(o["id"]), int(bool(o["label"])), value, str(o.get("source", ""))))
        self._store.add_outcomes(model, parsed, self._clock())
        return len(parsed)

    # ------------------------------------------------------------------ outputs

    def _reference(self, key: tuple[str, str]) -> _Reference:
        ref = self._references.get(key)
        if ref is None:
            known = [f"{m}/{v}" for m, v in self._references]
            raise NotFoundError(
                f"No drift reference for {key[0]}/{key[1]}."
                f"{did_you_mean(f'{key[0]}/{key[1]}', known)} Set one with "
                f"set_reference('{key[0]}', '{key[1]}', rows) (a sample of the training "
                f"dataset). References held: {sorted(known)}."
            )
        return ref

    def severity(self, share: float) -> str:
        """``critical`` / ``warning`` / ``none`` from ``monitoring.drift_share_*``."""
        if self.policy is None:
            return "none"
        if share >= self.policy.drift_share_critical:
            return "critical"
        if share >= self.policy.drift_share_warning:
            return "warning"
        return "none"

    def report(self, model: str, version: str | int, min_rows: int = DEFAULT_MIN_ROWS) -> DriftReport:
        """Compute drift of the current window vs the reference now, then open the next window.

        Args:
            model: Model name.
            version: Model version.
            min_rows: Fewest buffered rows a report may be computed from.

        Returns:
            A ``DriftReport``: per-feature score, method and verdict (Evidently's default tests),
            the share of drifted features, severity, and prediction drift.

        Raises:
            NotFoundError: no reference was set for this model version.
            UserError: the window has fewer than ``min_rows`` rows.

        Example:
            >>> r = mon.report("fraud", 2)
            >>> sorted(name for name, f in r.features.items() if f.drifted)
            ['amount']
        """
        return self.close(model, version, min_rows).report

    def close(self, model: str, version: str | int, min_rows: int = DEFAULT_MIN_ROWS,
              scheduled_end: float | None = None) -> ClosedWindow:
        """``report`` plus the frames the full Evidently report needs."""
        import pandas as pd

        key = _key(model, version)
        min_rows = max(1, min_rows)
        with self._lock:
            ref = self._reference(key)
            window = self._window(key)
            n = window.n
            if n < min_rows:
                raise UserError(
                    f"The current window of {key[0]}/{key[1]} has {n} rows; a drift report needs "
                    f"at least {min_rows}. Wait for {min_rows - n} more sampled requests, or pass "
                    "a smaller min_rows."
                )
            chunks, scores, ids = list(window.chunks), list(window.scores), list(window.ids)
            arrived = list(window.arrived)
            start, last_seq = window.opened_at, window.last_seq
            # Rows arriving during the computation belong to the next window.
            self._windows[key] = _Window(opened_at=self._clock(), dropped=window.dropped)
        current = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
        features = fast_drift(ref.profile, current, p_value=self.p_value,
                              distance_threshold=self.distance_threshold)
        baseline = ref.scores if ref.scores is not None else np.asarray(
            self._store.first_scores(*key), dtype=float)
        prediction: FeatureDrift | None = None
        if len(baseline) and scores:
            prediction = score_drift(baseline, np.asarray(scores), p_value=self.p_value,
                                     distance_threshold=self.distance_threshold)
        end = self._clock()
        drifted = sum(f.drifted for f in features.values())
        share = drifted / len(features) if features else 0.0
        path = None
        if self.report_dir is not None:
            stamp = _utc(end).strftime("%Y%m%dT%H%M%S%fZ")
            path = str(self.report_dir / key[0] / key[1] / f"drift-{stamp}")
        report = DriftReport(
            model=key[0], version=key[1], window_start=_utc(start), window_end=_utc(end),
            reference_rows=ref.profile.rows, current_rows=n, features=features,
            share_drifted=share, dataset_drift=bool(features) and share >= self.drift_share,
            severity=self.severity(share), prediction_drift=prediction, evidently_report=path,
        )
        self._store.close_window(
            key[0], key[1], last_seq, report.model_dump(mode="json"), start, end, share,
            report.severity, [(i, s) for i, s in zip(ids, scores, strict=True) if i is not None])
        self._remember_served(key[0], chunks, arrived, end)
        with self._lock:
            # The next window opened when the computation started; persist its real start.
            self._windows[key].opened_at = min(self._windows[key].opened_at, end)
            self._store.open_window(key[0], key[1], self._windows[key].opened_at,
                                    self._windows[key].dropped)
            self._latest[key] = report
        return ClosedWindow(report, ref.frame, current, ref.numerical, ref.categorical,
                            scheduled_end if scheduled_end is not None else end)

    def _remember_served(self, model: str, chunks: list[Any], arrived: list[float],
                         window_end: float) -> None:
        """Keep a seeded sample of a closed window's served rows of ``model`` (any version) in
        the store, for ``gate_lookback_s``: what a promotion's drift gate compares a candidate
        with. In the store, so a restarted monitor still has the last days of traffic.

        Each row keeps when it arrived (``_t``): a window stays open until it has ``min_rows``,
        so the last rows of a traffic burst can wait minutes and close with the next burst's;
        the gate's lookback counts them from their arrival, not from the window's close.
        """
        import pandas as pd

        recent = [c.assign(**{ARRIVED_COLUMN: t}) for c, t in zip(chunks, arrived, strict=True)
                  if t >= window_end - self.gate_lookback_s and len(c)]
        if not recent:
            return
        frame = pd.concat(recent, ignore_index=True)
        if len(frame) > SERVED_ROWS_PER_WINDOW:
            frame = frame.sample(SERVED_ROWS_PER_WINDOW, random_state=0)
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        self._store.add_served(model, window_end, rows, window_end - self.gate_lookback_s)

    def served_drift(self, model: str, candidate_rows: list[dict[str, Any]],
                     min_rows: int = DEFAULT_MIN_ROWS) -> DriftReport | None:
        """Drift between the traffic of ``model`` served in the last ``gate_lookback_s`` (any
        version) and a candidate's training sample.

        The promotion gate's question: was the candidate trained on data like what is served
        now? The candidate's sample is the reference; the current data is the model's served rows
        that arrived within the lookback (7 days in prod), from closed windows and the ones
        still open, at most ``max_reference_rows`` rows (a seeded sample across them). None
        when fewer than ``min_rows`` such rows were kept: nothing to judge on, and the gate
        says so (it blocks unless an incident commander accepts it).

        Example:
            >>> m.served_drift("fraud", candidate_sample).share_drifted   # doctest: +SKIP
            0.1
        """
        import pandas as pd

        since = self._clock() - self.gate_lookback_s
        windows = self._store.served(model, since)
        rows = [r for end, chunk in windows for r in chunk
                if (r.get(ARRIVED_COLUMN) or end) >= since]
        # The windows still open hold the newest served rows (up to min_rows - 1 of each
        # version): they are what is served now as much as any closed window's rows.
        with self._lock:
            open_chunks = [c for key, w in self._windows.items() if key[0] == model
                           for c, t in zip(w.chunks, w.arrived, strict=True) if t >= since]
        frames = [pd.DataFrame.from_records(rows)] if rows else []
        frames += [c for c in open_chunks if len(c)]
        if sum(len(f) for f in frames) < max(1, min_rows) or not candidate_rows:
            return None
        current = pd.concat(frames, ignore_index=True)
        current = current.drop(columns=[ARRIVED_COLUMN], errors="ignore")
        if len(current) > self.max_reference_rows:
            current = current.sample(self.max_reference_rows, random_state=0)
        frame = pd.DataFrame.from_records(candidate_rows)
        frame = frame[[c for c in frame.columns if c in current.columns]]
        numerical = [
            str(c) for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        ]
        categorical = [str(c) for c in frame.columns if str(c) not in numerical]
        profile = ReferenceProfile.from_frame(frame, numerical, categorical)
        features = fast_drift(profile, current, p_value=self.p_value,
                              distance_threshold=self.distance_threshold)
        share = sum(f.drifted for f in features.values()) / len(features) if features else 0.0
        now = self._clock()
        return DriftReport(
            model=model, version="candidate", window_start=_utc(now - self.gate_lookback_s),
            window_end=_utc(now),
            reference_rows=profile.rows, current_rows=len(current), features=features,
            share_drifted=share, dataset_drift=bool(features) and share >= self.drift_share,
            severity=self.severity(share), prediction_drift=None, evidently_report=None)

    def due(self) -> list[tuple[str, str, float]]:
        """Windows older than ``window_s`` that have a reference: ``(model, version, due_at)``."""
        if self.window_s is None:
            return []
        now = self._clock()
        with self._lock:
            return [(m, v, w.opened_at + self.window_s) for (m, v), w in self._windows.items()
                    if (m, v) in self._references and now >= w.opened_at + self.window_s]

    def tick(self, min_rows: int = DEFAULT_MIN_ROWS) -> list[ClosedWindow]:
        """Close every due tumbling window that has at least ``min_rows`` rows.

        A due window with fewer rows stays open (and keeps its rows) until it has enough, so a
        quiet model is reported on less often rather than on noise.

        Example:
            >>> [c.report.severity for c in mon.tick()]
            ['critical']
        """
        closed = []
        for model, version, due_at in self.due():
            try:
                closed.append(self.close(model, version, min_rows, scheduled_end=due_at))
            except UserError:
                continue
        return closed

    def latest_report(self, model: str, version: str | int) -> DriftReport | None:
        """The last report computed for a model version, or None.

        Example:
            >>> DriftMonitor().latest_report("fraud", 2) is None
            True
        """
        with self._lock:
            return self._latest.get(_key(model, version))

    def set_report(self, report: DriftReport) -> None:
        """Replace the latest report of its version (the actor adds the Evidently path)."""
        key = (report.model, report.version)
        self._store.update_report(key[0], key[1], report.window_end.timestamp(),
                                  report.model_dump(mode="json"))
        with self._lock:
            if self._latest.get(key, report).window_end == report.window_end:
                self._latest[key] = report

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
                    buffered_rows=w.n, dropped_rows=w.dropped,
                    reference_rows=0 if ref is None else ref.profile.rows,
                    window_start=_utc(w.opened_at),
                    mean_score=sum(w.scores) / len(w.scores) if w.scores else None,
                )
            return DriftMonitorStats(
                buffered_rows=sum(w.buffered_rows for w in windows.values()),
                dropped_rows=sum(w.dropped_rows for w in windows.values()),
                rejected_batches=self._rejected, reports_made=self._store.report_count(),
                windows=windows,
            )
