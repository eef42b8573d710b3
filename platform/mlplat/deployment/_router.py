"""The router's logic as plain classes: no Ray here, so unit tests drive it directly.

``RouterCore`` validates a predict body, looks up features, picks the live version by the
traffic split, scores in-process and answers. Work that must not slow the caller — the shadow
copy and the drift sample — leaves the request path through bounded queues with counted drops.
The Serve deployment in ``_serve.py`` is a thin shell around it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mlplat.config import RequestLimits
from mlplat.contracts.v1 import FeatureSpec, PredictResponse
from mlplat.deployment._drift_sampler import DriftSampler as DriftSampler
from mlplat.deployment._drift_sampler import deliver as deliver
from mlplat.deployment._routing import InjectedFault as InjectedFault
from mlplat.deployment._routing import SplitRouter
from mlplat.deployment._split import request_key
from mlplat.deployment._types import (
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


LIVE, SHADOW = "live", "shadow"
"""Roles a loaded version plays: a shadow may run elsewhere (its own deployment)."""


@dataclass(frozen=True)
class Prepared:
    """A validated request with its features looked up and its version picked."""

    request_id: str
    model_name: str
    version: str
    row: dict[str, Any]
    missing: list[str]


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


class RouterCore(SplitRouter):
    """The deployment plane's ``SplitRouter`` for tabular models: validation, feature lookup,
    in-process scoring, shadow mirroring and the drift sample, for one replica.

    Args:
        app_name: The app this router serves (for messages).
        spec: The app's serving contract (``AppConfig.features``).
        threshold: Score at or above which ``label`` is 1.
        loader: ``(model, version) -> ServedModel``.
        lookup: Online feature reads.
        drift_sample_rate: Share of requests sampled for the drift monitor.
        new_request_id: Generates ids for requests that carry none.
        limits: Body size and JSON nesting limits (platform.yaml ``requests``).

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
        shadow_loader: ModelLoader | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        super().__init__(app_name, rng=rng)
        self.spec = spec
        self.threshold = threshold
        self._loader = loader
        self._shadow_loader = shadow_loader or loader
        self._lookup = lookup
        self._new_request_id = new_request_id
        self._limits = limits or RequestLimits()
        self._lookup_names = [f for v in spec.feature_views for f in v.features]
        self._models: dict[tuple[str, str, str], ServedModel] = {}
        self._numeric: set[str] = set()
        self._categorical: set[str] = set()
        self.tuning = RouterTuning()
        self.drift = DriftSampler(drift_sample_rate, self.tuning.drift_queue_size, rng)
        self.rejected: Counter[int] = Counter()
        self.errors = 0
        self._shadow_totals: dict[str, _ShadowTotals] = {}
        self._shadow_recent: deque[ShadowComparison] = deque(maxlen=self.tuning.shadow_buffer_size)
        self._shadow_in_flight = 0
        self._shadow_pending: set[asyncio.Future[Any]] = set()
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def loaded_versions(self) -> list[str]:
        return sorted({v for _, v, _ in self._models})

    def plan(self, user_config: dict[str, Any] | RouterUserConfig
             ) -> tuple[RouterUserConfig, list[tuple[str, str, str]]]:
        """Validate a ``user_config``; returns it and the (model, version, role) still to load.

        Raises:
            UserError: the config is invalid.
        """
        new = self.validate(user_config)
        return new, sorted(k for k in self._wanted(new) - set(self._models)
                           if self._reusable(k) is None)

    def _reusable(self, key: tuple[str, str, str]) -> ServedModel | None:
        # With one loader for both roles a version moving shadow → live keeps its model.
        if self._shadow_loader is not self._loader:
            return None
        other = (key[0], key[1], SHADOW if key[2] == LIVE else LIVE)
        return self._models.get(other)

    @staticmethod
    def _wanted(new: RouterUserConfig) -> set[tuple[str, str, str]]:
        wanted = {(new.model, v, LIVE) for v in new.split.weights}
        if new.split.shadow:
            wanted.add((new.model, new.split.shadow, SHADOW))
        return wanted

    def load(self, key: tuple[str, str, str]) -> ServedModel:
        """Load one (model, version, role); wraps unexpected failures in ``InfraError``."""
        model, version, role = key
        try:
            return (self._shadow_loader if role == SHADOW else self._loader)(model, version)
        except MlplatError:
            raise
        except Exception as exc:
            raise InfraError(
                f"router '{self.app_name}' could not load {model} version {version}: "
                f"{type(exc).__name__}: {exc}. The previous split stays in force."
            ) from exc

    def warm_row(self) -> dict[str, Any]:
        """A row with every feature unknown: the model fills training means (a cheap warm-up)."""
        return {n: None for n in self.spec.feature_names()}

    def commit(self, new: RouterUserConfig,
               fresh: dict[tuple[str, str, str], ServedModel]) -> dict[str, list[str]]:
        """Swap in ``new`` with the ``fresh`` models already loaded (and warmed)."""
        wanted = self._wanted(new)
        dropped = sorted({k[1] for k in self._models if k not in wanted}
                         - {k[1] for k in wanted})
        reused = {k: m for k in wanted - set(self._models) - set(fresh)
                  if (m := self._reusable(k)) is not None}
        self._models = {k: m for k, m in {**self._models, **reused, **fresh}.items()
                        if k in wanted}
        self.configure(new)
        self._retune(new.tuning)
        self._learn_types()
        return {"loaded": sorted({k[1] for k in fresh}), "dropped": dropped}

    def apply(self, user_config: dict[str, Any] | RouterUserConfig) -> dict[str, list[str]]:
        """Adopt a new ``user_config``: load versions it names, drop ones it no longer names.

        New versions are loaded and warmed (one scored row) before anything is swapped, so a
        version that fails to load leaves the router serving the previous split, and no
        request is the first one a version ever sees.

        Returns:
            ``{"loaded": [...], "dropped": [...]}`` versions.

        Raises:
            UserError: the config is invalid or a version cannot be loaded.
        """
        new, to_load = self.plan(user_config)
        fresh: dict[tuple[str, str, str], ServedModel] = {}
        for key in to_load:
            model = self.load(key)
            if key[2] == LIVE:
                self._score(model, key[1], self.warm_row())
            fresh[key] = model
        return self.commit(new, fresh)

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

    def prepare(self, raw: bytes | str) -> Prepared:
        """Validate a predict body, pick its version and look up its features.

        Raises:
            RequestError: the body breaks the serving contract (400, field named).
            InfraError: the online store failed (503).
        """
        if self._picker is None or self._config is None:
            raise NotFoundError(
                f"router '{self.app_name}' has no model versions loaded yet; deploy a split."
            )
        req = parse_predict_request(raw, self.spec, self._numeric, self._categorical,
                                    self._limits)
        request_id = req.request_id or self._new_request_id()
        version = self.route(request_key(req.entity, self.spec.entity_keys, req.request_id))
        looked_up = self._lookup_features(dict(req.entity))
        row = {**{n: looked_up.get(n) for n in self._lookup_names}, **req.features}
        missing = [n for n, v in row.items() if v is None]
        return Prepared(request_id, self._config.model, version, row, missing)

    def model_for(self, version: str, role: str = LIVE) -> ServedModel:
        assert self._config is not None  # prepare() checked it
        return self._models[(self._config.model, version, role)]

    def finish(self, prep: Prepared, version: str, score: float
               ) -> tuple[PredictResponse, _ShadowJob | None]:
        """Build the answer from ``version``'s score and the shadow work to run off-path."""
        assert self._config is not None
        self.requests[version] += 1
        response = PredictResponse(
            model=prep.model_name,
            version=version,
            score=score,
            label=int(score >= self.threshold),
            request_id=prep.request_id,
            features_missing=prep.missing,
        )
        self.drift.offer(prep.model_name, version, prep.row, score, prep.request_id)
        shadow = self._config.split.shadow
        job = None
        if shadow is not None:
            job = _ShadowJob(prep.request_id, version, score, shadow,
                             self.model_for(shadow, SHADOW), dict(prep.row))
        return response, job

    def _score_live(self, version: str, row: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        try:
            delay = self.inject(version)
            if delay:
                time.sleep(delay)
            score = self._score(self.model_for(version), version, row)
        except Exception:
            self.observe(version, (time.perf_counter() - t0) * 1000, ok=False)
            raise
        self.observe(version, (time.perf_counter() - t0) * 1000, ok=True)
        return score

    def predict(self, raw: bytes | str) -> tuple[PredictResponse, _ShadowJob | None]:
        """Answer one predict body; returns the response and the shadow work to run off-path.

        When the picked version fails (a broken canary) and it is not the stable version, the
        stable version answers instead: the failure counts against the picked version's SLO,
        the caller still gets a 200 naming the version that answered.

        Raises:
            RequestError: the body breaks the serving contract (400, field named).
            InfraError: the online store or the stable version failed (503).
        """
        prep = self.prepare(raw)
        version = prep.version
        try:
            score = self._score_live(version, prep.row)
        except MlplatError as exc:
            if isinstance(exc, UserError) and not isinstance(exc, InjectedFault):
                raise
            version = self.fall_back(prep.version, exc)
            score = self._score_live(version, prep.row)
        except Exception as exc:
            version = self.fall_back(prep.version, exc)
            score = self._score_live(version, prep.row)
        return self.finish(prep, version, score)

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
        except Exception as exc:
            status, body = self.error_body(exc)
            return status, body, None
        return 200, response.model_dump(), job

    def error_body(self, exc: Exception) -> tuple[int, dict[str, Any]]:
        """Map a request failure to (status, ``{"error", "field", "type"}``) and count it."""
        if isinstance(exc, MlplatError):
            status = exc.http_status
            if status >= 500:
                self.errors += 1
            else:
                self.rejected[status] += 1
            return status, {"error": str(exc), "field": getattr(exc, "field", None),
                            "type": type(exc).__name__}
        self.errors += 1  # a bug still answers JSON, never a traceback
        return 500, {"error": f"internal error: {type(exc).__name__}: {exc}",
                     "field": None, "type": "InternalError"}

    async def _ascore_live(self, version: str, row: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        try:
            delay = self.inject(version)
            if delay:
                await asyncio.sleep(delay)
            model = self.model_for(version)
            apredict = getattr(model, "apredict", None)
            if apredict is not None:  # a version in its own deployment, behind a handle
                scores = await apredict([row])
                score = float(scores[0])
                if not 0.0 <= score <= 1.0:
                    raise InfraError(f"version {version} returned score {score}, outside [0, 1].")
            else:
                score = self._score(model, version, row)
        except Exception:
            self.observe(version, (time.perf_counter() - t0) * 1000, ok=False)
            raise
        self.observe(version, (time.perf_counter() - t0) * 1000, ok=True)
        return score

    async def respond_async(self, raw: bytes | str
                            ) -> tuple[int, dict[str, Any], _ShadowJob | None]:
        """``respond`` for the Serve replica: versions behind handles are awaited, not blocked on."""
        try:
            prep = self.prepare(raw)
            version = prep.version
            try:
                score = await self._ascore_live(version, prep.row)
            except Exception as exc:
                if isinstance(exc, UserError) and not isinstance(exc, InjectedFault):
                    raise
                version = self.fall_back(prep.version, exc)
                score = await self._ascore_live(version, prep.row)
            response, job = self.finish(prep, version, score)
        except Exception as exc:
            status, body = self.error_body(exc)
            return status, body, None
        return 200, response.model_dump(), job

    # ------------------------------------------------------------------ shadow (off-path)

    def try_acquire_shadow(self) -> bool:
        """Reserve one shadow slot; False (and a counted drop) when all are in use."""
        if self._shadow_in_flight >= self.tuning.shadow_max_in_flight:
            self.shadow_dropped += 1
            return False
        self._shadow_in_flight += 1
        return True

    def shadow_finished(self, job: _ShadowJob, score: float | None, latency_ms: float) -> None:
        """Release a shadow slot and record its answer (``None``: the shadow call failed)."""
        self._shadow_in_flight -= 1
        self.observe(job.shadow_version, latency_ms, ok=score is not None)
        if score is None:
            self.shadow_failed += 1
            return
        self.record_shadow(ShadowComparison(job.request_id, job.live_version, job.live_score,
                                            job.shadow_version, score))

    def submit_shadow(self, job: _ShadowJob) -> bool:
        """Run the shadow copy of an in-process model in a worker thread; drop (and count) it
        when too many are pending. Must be called from the event loop that serves requests.
        """
        if not self.try_acquire_shadow():
            return False
        if self._executor is None:
            # One thread: shadow work queues behind itself rather than competing with the live
            # path for the replica's (fractional) CPU.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._score_shadow, job
        )
        self._shadow_pending.add(future)
        future.add_done_callback(lambda f: self._shadow_done(job, f, started))
        return True

    def _score_shadow(self, job: _ShadowJob) -> float:
        delay = self.inject(job.shadow_version, shadow=True)
        if delay:
            time.sleep(delay)
        return self._score(job.model, job.shadow_version, job.row)

    def _shadow_done(self, job: _ShadowJob, future: asyncio.Future[float],
                     started: float) -> None:
        self._shadow_pending.discard(future)
        ok = not future.cancelled() and future.exception() is None
        self.shadow_finished(job, future.result() if ok else None,
                             (time.perf_counter() - started) * 1000)

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
            **self.routing_stats(),
            "loaded_versions": self.loaded_versions,
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
