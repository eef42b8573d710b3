"""The router's logic as plain classes: no Ray here, so unit tests drive it directly.

``RouterCore`` validates a predict body, looks up features, picks the live version by the
traffic split, scores in-process and answers. Work that must not slow the caller — the shadow
copy and the drift sample — leaves the request path through bounded queues with counted drops.
The Serve deployment in ``_serve.py`` is a thin shell around it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlplat.contracts.v1 import FeatureSpec, PredictResponse, TrafficSplit
from mlplat.deployment._split import SplitPicker, request_key
from mlplat.deployment._types import (
    DriftSink,
    FeatureLookup,
    ModelLoader,
    RouterTuning,
    RouterUserConfig,
    ServedModel,
)
from mlplat.deployment._validate import parse_predict_request
from mlplat.errors import InfraError, MlplatError, NotFoundError, UserError


@dataclass(frozen=True)
class ShadowComparison:
    """One request answered by the live version and mirrored to the shadow version."""

    request_id: str
    live_version: str
    live_score: float
    shadow_version: str
    shadow_score: float


@dataclass(frozen=True)
class _ShadowJob:
    request_id: str
    live_version: str
    live_score: float
    shadow_version: str
    model: ServedModel
    row: dict[str, Any]


class _ShadowTotals:
    __slots__ = ("agreements", "comparisons", "sum_abs_diff")

    def __init__(self) -> None:
        self.comparisons = 0
        self.sum_abs_diff = 0.0
        self.agreements = 0

    def as_dict(self) -> dict[str, Any]:
        n = self.comparisons
        return {
            "comparisons": n,
            "mean_abs_diff": self.sum_abs_diff / n if n else None,
            "agreement_rate": self.agreements / n if n else None,
        }


class DriftSampler:
    """Samples (row, score) pairs for the drift monitor into a bounded queue.

    Example:
        >>> s = DriftSampler(rate=1.0, queue_size=2)
        >>> [s.offer("fraud", "1", {"x": 1.0}, 0.2) for _ in range(3)]
        [True, True, False]
        >>> s.dropped, len(s.drain(batch_size=10))
        (1, 1)
    """

    def __init__(self, rate: float, queue_size: int, rng: random.Random | None = None) -> None:
        self.rate = rate
        self.queue_size = queue_size
        self._rng = rng or random.Random()
        self._queue: deque[tuple[str, str, dict[str, Any], float]] = deque()
        self.sampled = 0
        self.sent = 0
        self.dropped = 0

    def offer(self, model: str, version: str, row: dict[str, Any], score: float) -> bool:
        """Queue a sample (with probability ``rate``); False if not sampled or dropped."""
        if self.rate <= 0 or (self.rate < 1 and self._rng.random() >= self.rate):
            return False
        self.sampled += 1
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            return False
        self._queue.append((model, version, row, score))
        return True

    def drain(self, batch_size: int) -> list[tuple[str, str, list[dict[str, Any]], list[float]]]:
        """Empty the queue into per-(model, version) batches of at most ``batch_size``."""
        batches: dict[tuple[str, str], tuple[list[dict[str, Any]], list[float]]] = {}
        out = []
        while self._queue:
            model, version, row, score = self._queue.popleft()
            rows, scores = batches.setdefault((model, version), ([], []))
            rows.append(row)
            scores.append(score)
            if len(rows) >= batch_size:
                out.append((model, version, rows, scores))
                del batches[(model, version)]
        out.extend((m, v, rows, scores) for (m, v), (rows, scores) in batches.items())
        return out

    def send(self, batches: list[tuple[str, str, list[dict[str, Any]], list[float]]],
             sink: DriftSink) -> int:
        """Deliver drained batches through ``sink`` and count the outcome; returns delivered."""
        delivered, undelivered = deliver(batches, sink)
        self.account(delivered, undelivered)
        return delivered

    def account(self, delivered: int, undelivered: int) -> None:
        """Count a delivery done elsewhere (the Serve shell sends from a worker thread)."""
        self.sent += delivered
        self.dropped += undelivered

    def stats(self) -> dict[str, int]:
        return {"sampled": self.sampled, "sent": self.sent, "dropped": self.dropped,
                "queued": len(self._queue)}


def deliver(
    batches: list[tuple[str, str, list[dict[str, Any]], list[float]]], sink: DriftSink
) -> tuple[int, int]:
    """Send drift batches through ``sink``; returns (samples delivered, samples not delivered)."""
    delivered = undelivered = 0
    for model, version, rows, scores in batches:
        try:
            ok = sink(model, version, rows, scores)
        except Exception:  # the monitor's trouble must not hurt serving
            ok = False
        if ok:
            delivered += len(rows)
        else:
            undelivered += len(rows)
    return delivered, undelivered


class RouterCore:
    """Routing, validation, in-process scoring, shadow mirroring and counters for one replica.

    Args:
        app_name: The app this router serves (for messages).
        spec: The app's serving contract (``AppConfig.features``).
        threshold: Score at or above which ``label`` is 1.
        loader: ``(model, version) -> ServedModel``.
        lookup: Online feature reads.
        drift_sample_rate: Share of requests sampled for the drift monitor.
        new_request_id: Generates ids for requests that carry none.

    Example:
        >>> core = RouterCore("fraud", spec, 0.5, loader, lookup)      # doctest: +SKIP
        >>> core.apply({"model": "fraud", "split": {"weights": {"1": 100}}})  # doctest: +SKIP
        >>> status, body = core.respond(b'{"entity": {"account_id": 1}, ...}')  # doctest: +SKIP
    """

    def __init__(
        self,
        app_name: str,
        spec: FeatureSpec,
        threshold: float,
        loader: ModelLoader,
        lookup: FeatureLookup,
        *,
        drift_sample_rate: float = 0.0,
        rng: random.Random | None = None,
        new_request_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.app_name = app_name
        self.spec = spec
        self.threshold = threshold
        self._loader = loader
        self._lookup = lookup
        self._new_request_id = new_request_id
        self._lookup_names = [f for v in spec.feature_views for f in v.features]
        self._config: RouterUserConfig | None = None
        self._picker: SplitPicker | None = None
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._numeric: set[str] = set()
        self._categorical: set[str] = set()
        self.tuning = RouterTuning()
        self.drift = DriftSampler(drift_sample_rate, self.tuning.drift_queue_size, rng)
        self.requests: Counter[str] = Counter()
        self.rejected: Counter[int] = Counter()
        self.errors = 0
        self._shadow_totals: dict[str, _ShadowTotals] = {}
        self._shadow_recent: deque[ShadowComparison] = deque(maxlen=self.tuning.shadow_buffer_size)
        self._shadow_in_flight = 0
        self.shadow_dropped = 0
        self.shadow_failed = 0
        self._shadow_pending: set[asyncio.Future[Any]] = set()
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def split(self) -> TrafficSplit:
        """The split in force. Raises UserError before the first ``apply``."""
        if self._config is None:
            raise UserError(f"router '{self.app_name}' has no traffic split yet; deploy one.")
        return self._config.split

    @property
    def model_name(self) -> str | None:
        return self._config.model if self._config else None

    @property
    def loaded_versions(self) -> list[str]:
        return sorted(v for _, v in self._models)

    def apply(self, user_config: dict[str, Any] | RouterUserConfig) -> dict[str, list[str]]:
        """Adopt a new ``user_config``: load versions it names, drop ones it no longer names.

        New versions are loaded before anything is swapped, so a version that fails to load
        leaves the router serving the previous split.

        Returns:
            ``{"loaded": [...], "dropped": [...]}`` versions.

        Raises:
            UserError: the config is invalid or a version cannot be loaded.
        """
        from pydantic import ValidationError

        try:
            new = RouterUserConfig.model_validate(user_config)
        except ValidationError as exc:
            raise UserError(f"invalid router user_config for app '{self.app_name}': {exc}") from exc
        wanted = {(new.model, v) for v in new.split.weights}
        if new.split.shadow:
            wanted.add((new.model, new.split.shadow))
        fresh: dict[tuple[str, str], ServedModel] = {}
        for key in sorted(wanted - set(self._models)):
            try:
                fresh[key] = self._loader(*key)
            except MlplatError:
                raise
            except Exception as exc:
                raise InfraError(
                    f"router '{self.app_name}' could not load {key[0]} version {key[1]}: "
                    f"{type(exc).__name__}: {exc}. The previous split stays in force."
                ) from exc
        dropped = sorted(k[1] for k in self._models if k not in wanted)
        self._models = {k: m for k, m in {**self._models, **fresh}.items() if k in wanted}
        self._config = new
        self._picker = SplitPicker(new.split)
        self._retune(new.tuning)
        self._learn_types()
        return {"loaded": sorted(v for _, v in fresh), "dropped": dropped}

    def _retune(self, tuning: RouterTuning) -> None:
        if tuning == self.tuning:
            return
        self.tuning = tuning
        self.drift.queue_size = tuning.drift_queue_size
        self._shadow_recent = deque(self._shadow_recent, maxlen=tuning.shadow_buffer_size)

    def _learn_types(self) -> None:
        # The preprocessor knows which request features are numeric; use it to answer a 400
        # for `"amount": "12"` rather than letting the model fail on it.
        self._numeric, self._categorical = set(), set()
        for model in self._models.values():
            pre = getattr(model, "preprocessor", None)
            if pre is None:
                continue
            self._numeric |= {c.name for c in getattr(pre, "numeric", [])}
            self._categorical |= {c.name for c in getattr(pre, "categorical", [])}

    # ------------------------------------------------------------------ request path

    def predict(self, raw: bytes | str) -> tuple[PredictResponse, _ShadowJob | None]:
        """Answer one predict body; returns the response and the shadow work to run off-path.

        Raises:
            RequestError: the body breaks the serving contract (400, field named).
            InfraError: the online store failed (503).
        """
        if self._picker is None or self._config is None:
            raise NotFoundError(
                f"router '{self.app_name}' has no model versions loaded yet; deploy a split."
            )
        req = parse_predict_request(raw, self.spec, self._numeric, self._categorical)
        request_id = req.request_id or self._new_request_id()
        version = self._picker.choose(request_key(req.entity, self.spec.entity_keys,
                                                  req.request_id))
        model_name = self._config.model

        looked_up = self._lookup_features(dict(req.entity))
        row = {**{n: looked_up.get(n) for n in self._lookup_names}, **req.features}
        missing = [n for n, v in row.items() if v is None]
        score = self._score(self._models[(model_name, version)], version, row)
        self.requests[version] += 1
        response = PredictResponse(
            model=model_name,
            version=version,
            score=score,
            label=int(score >= self.threshold),
            request_id=request_id,
            features_missing=missing,
        )
        self.drift.offer(model_name, version, row, score)
        shadow = self._config.split.shadow
        job = None
        if shadow is not None:
            job = _ShadowJob(request_id, version, score, shadow,
                             self._models[(model_name, shadow)], dict(row))
        return response, job

    def _lookup_features(self, entity: dict[str, Any]) -> dict[str, Any]:
        try:
            rows = self._lookup.get([entity])
        except MlplatError:
            raise
        except Exception as exc:
            raise InfraError(
                f"online feature lookup failed for app '{self.app_name}': "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return rows[0] if rows else {}

    @staticmethod
    def _score(model: ServedModel, version: str, row: dict[str, Any]) -> float:
        score = float(model.predict_proba([row])[0])
        if not 0.0 <= score <= 1.0:
            raise InfraError(f"version {version} returned score {score}, outside [0, 1].")
        return score

    def respond(self, raw: bytes | str) -> tuple[int, dict[str, Any], _ShadowJob | None]:
        """``predict`` mapped to an HTTP status and JSON body; errors become ``{"error", "field"}``.

        Example:
            >>> status, body, shadow_job = core.respond(b"not json")  # doctest: +SKIP
            >>> status, body["field"]                                  # doctest: +SKIP
            (400, '<body>')
        """
        try:
            response, job = self.predict(raw)
        except MlplatError as exc:
            status = exc.http_status
            if status >= 500:
                self.errors += 1
            else:
                self.rejected[status] += 1
            return status, {"error": str(exc), "field": getattr(exc, "field", None),
                            "type": type(exc).__name__}, None
        except Exception as exc:  # a bug still answers JSON, never a traceback
            self.errors += 1
            return 500, {"error": f"internal error: {type(exc).__name__}: {exc}",
                         "field": None, "type": "InternalError"}, None
        return 200, response.model_dump(), job

    # ------------------------------------------------------------------ shadow (off-path)

    def submit_shadow(self, job: _ShadowJob) -> bool:
        """Run the shadow copy in a worker thread; drop (and count) it when too many are pending.

        Must be called from the event loop that serves requests.
        """
        if self._shadow_in_flight >= self.tuning.shadow_max_in_flight:
            self.shadow_dropped += 1
            return False
        if self._executor is None:
            # One thread: shadow work queues behind itself rather than competing with the live
            # path for the replica's (fractional) CPU.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_in_flight += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._score, job.model, job.shadow_version, job.row
        )
        self._shadow_pending.add(future)
        future.add_done_callback(lambda f: self._shadow_done(job, f))
        return True

    def _shadow_done(self, job: _ShadowJob, future: asyncio.Future[float]) -> None:
        self._shadow_in_flight -= 1
        self._shadow_pending.discard(future)
        if future.cancelled() or future.exception() is not None:
            self.shadow_failed += 1
            return
        self.record_shadow(ShadowComparison(job.request_id, job.live_version, job.live_score,
                                            job.shadow_version, future.result()))

    def record_shadow(self, c: ShadowComparison) -> None:
        """Add one live/shadow comparison to the bounded buffer and the running totals."""
        self._shadow_recent.append(c)
        totals = self._shadow_totals.setdefault(c.shadow_version, _ShadowTotals())
        totals.comparisons += 1
        totals.sum_abs_diff += abs(c.live_score - c.shadow_score)
        totals.agreements += int((c.live_score >= self.threshold)
                                 == (c.shadow_score >= self.threshold))

    async def drain_shadow(self) -> None:
        """Wait for shadow calls in flight (tests and graceful shutdown)."""
        while self._shadow_pending:
            await asyncio.gather(*list(self._shadow_pending), return_exceptions=True)
            await asyncio.sleep(0)  # let done-callbacks run

    def recent_shadow(self, n: int = 20) -> list[ShadowComparison]:
        return list(self._shadow_recent)[-n:]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ introspection

    def stats(self) -> dict[str, Any]:
        """What ``GET {route_prefix}/split`` answers: split, counts, shadow agreement, drops."""
        shadow = self._config.split.shadow if self._config else None
        current = self._shadow_totals.get(shadow or "", _ShadowTotals()).as_dict()
        return {
            "app": self.app_name,
            "model": self.model_name,
            "split": self._config.split.model_dump() if self._config else None,
            "loaded_versions": self.loaded_versions,
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "errors": self.errors,
            "shadow": {
                "version": shadow,
                **current,
                "in_flight": self._shadow_in_flight,
                "dropped": self.shadow_dropped,
                "failed": self.shadow_failed,
                "by_version": {v: t.as_dict() for v, t in self._shadow_totals.items()},
            },
            "drift": self.drift.stats(),
        }
