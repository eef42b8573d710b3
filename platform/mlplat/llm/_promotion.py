"""LLM versions through the deployment plane's promotion controller.

The same ``PromotionController`` that promotes tabular models (gates → shadow, at least
``promotion_timing.shadow_min_s`` → each ``promotion.canary_steps_pct`` step → production,
state in a store, rollback on breach) runs LLM promotions with three LLM parts:

* ``llm_judge``: a window breaches on ``slos.llm`` (error rate, TTFT p99, inter-token p99),
  not on the whole request's p99 (a generation's duration is not an SLO);
* ``LLMPort``: splits go through ``set_llm_traffic`` (a Serve ``user_config`` reconfigure, the
  new version loaded before it gets weight); the candidate gates check its files; the shadow
  stage passes only when the shadow's answers are like production's
  (``slos.llm.min_shadow_similarity``, mean difflib word ratio) — the text gate;
* the controller lives in the LLM SLO guard actor (``_guard.py``), fed by the LLM router
  replicas' pushes, so ``mlplat deploy promote <llm app> N --controller <guard>`` works like it
  does for fraud.

Example:
    >>> from mlplat.deployment import promote
    >>> promote(cfg, "llm", "2", token=person_token(cfg, "alice"), reason="new tune",
    ...         controller=LLM_GUARD_ACTOR)["stage"]                     # doctest: +SKIP
    'shadow'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.contracts.v1 import GateResult, TrafficSplit
from mlplat.deployment import SHADOW_STAGE, WindowStats, breach
from mlplat.llm._router import ITL, TTFT

if TYPE_CHECKING:
    from mlplat.config import LLMServingSLO, PlatformConfig
    from mlplat.llm._config import LLMAppConfig


def llm_breach(slo: LLMServingSLO, stats: WindowStats) -> str | None:
    """Why one LLM version's window breaches ``slos.llm``, or None.

    Example:
        >>> llm_breach(cfg.slos.llm, WindowStats(5, 0, None, {"ttft": 2000.0}))  # doctest: +SKIP
        'ttft p99 2000 ms > 1000 ms (5 requests)'
    """
    return breach(stats, slo.max_error_rate, None, slo.min_samples,
                  {TTFT: slo.ttft_p99_ms, ITL: slo.inter_token_p99_ms})


def llm_judge(cfg: PlatformConfig) -> Any:
    """The promotion controller's judge for LLM apps (``slos.llm`` of platform.yaml)."""
    slo = cfg.slos.llm
    return lambda stats: llm_breach(slo, stats)


@dataclass
class LLMCandidate:
    """A version's model folder, as the gates see it."""

    name: str
    version: str
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)


def combined_snapshot(live: dict[str, Any], shadow: dict[str, Any]) -> dict[str, Any]:
    """Per-version cumulative counters, live and shadow added up: what the controller judges.

    In the shadow stage the candidate answers only shadow copies; they are its evidence
    (``promotion.min_stage_requests``) and its SLO window, as for tabular shadows. Both
    inputs only grow, so their sum does too.

    Example:
        >>> combined_snapshot({"1": {"requests": 2, "errors": 0, "buckets": [2]}},
        ...                   {"1": {"requests": 1, "errors": 1, "buckets": [1]}})["1"]["errors"]
        1
    """
    out: dict[str, Any] = {}
    for part in (live, shadow):
        for version, snap in part.items():
            into = out.setdefault(version, {"requests": 0, "errors": 0,
                                            "buckets": [0] * len(snap["buckets"])})
            into["requests"] += snap["requests"]
            into["errors"] += snap["errors"]
            into["buckets"] = [a + b for a, b in zip(into["buckets"], snap["buckets"],
                                                      strict=True)]
            for name, hist in (snap.get("extra") or {}).items():
                extra = into.setdefault("extra", {})
                prev = extra.get(name, [0] * len(hist))
                extra[name] = [a + b for a, b in zip(prev, hist, strict=True)]
    return out


class ShadowFleet:
    """Every router replica's shadow comparison totals, added up: what the text gate judges.

    Replicas push their raw totals (``LLMRouter.shadow_sums``) with their SLO counters; a
    replica silent for ``history_s`` is dropped (gone).

    Example:
        >>> fleet = ShadowFleet(history_s=60)
        >>> fleet.report("llm", "r1", {"1->2": {"comparisons": 10, "exact": 5,
        ...                                      "sum_similarity": 9.0}}, now=0.0)
        >>> fleet.report("llm", "r2", {"1->2": {"comparisons": 30, "exact": 0,
        ...                                      "sum_similarity": 3.0}}, now=1.0)
        >>> fleet.comparisons("llm", now=2.0)["1->2"]["mean_similarity"]
        0.3
    """

    def __init__(self, history_s: float) -> None:
        self.history_s = history_s
        self._lock = threading.Lock()
        self._by_replica: dict[tuple[str, str], tuple[float, dict[str, dict[str, float]]]] = {}

    def report(self, app: str, replica: str, sums: dict[str, dict[str, float]],
               now: float) -> None:
        with self._lock:
            self._by_replica[(app, replica)] = (now, sums)

    def comparisons(self, app: str, now: float) -> dict[str, dict[str, Any]]:
        """Per ``live->shadow`` pair: comparisons, exact-match rate, mean similarity, and how
        many replicas contributed."""
        totals: dict[str, dict[str, float]] = {}
        with self._lock:
            for key in [k for k, (t, _) in self._by_replica.items() if t < now - self.history_s]:
                del self._by_replica[key]
            for (a, _replica), (_, sums) in self._by_replica.items():
                if a != app:
                    continue
                for pair, s in sums.items():
                    into = totals.setdefault(pair, {"comparisons": 0, "exact": 0,
                                                    "sum_similarity": 0.0, "replicas": 0})
                    for k in ("comparisons", "exact", "sum_similarity"):
                        into[k] += s.get(k, 0)
                    into["replicas"] += 1
        return {pair: {"comparisons": int(t["comparisons"]),
                       "exact_match_rate": t["exact"] / t["comparisons"] if t["comparisons"]
                       else None,
                       "mean_similarity": round(t["sum_similarity"] / t["comparisons"], 6)
                       if t["comparisons"] else None,
                       "replicas": int(t["replicas"])}
                for pair, t in totals.items()}


class LLMPort:
    """``ControllerPort`` for LLM apps: the router through ``set_llm_traffic``, files as gates.

    Args:
        cfg: Platform config.
        shadow_comparisons: ``app -> {pair: comparison}`` over every router replica (the
            guard's ``ShadowFleet``); None asks one replica through the app's handle.
    """

    def __init__(self, cfg: PlatformConfig,
                 shadow_comparisons: Callable[[str], dict[str, Any]] | None = None) -> None:
        from mlplat.deployment import ServePort

        self.cfg = cfg
        self._registry = ServePort(cfg)  # aliases, staging poll, alerts: the same registry
        self._shadow_comparisons = shadow_comparisons

    def apply_split(self, app: LLMAppConfig, split: TrafficSplit, *, stable: str | None,
                    actor: str, reason: str) -> None:
        from mlplat.llm._api import set_llm_traffic

        set_llm_traffic(self.cfg, app.name, split, actor=actor, reason=reason, stable=stable,
                        action="llm.promotion.split")

    def current_split(self, app: LLMAppConfig) -> TrafficSplit | None:
        from mlplat.deployment import call_app

        try:
            return TrafficSplit.model_validate(call_app(app.name, "split_state", 30))
        except Exception:
            return None

    def load_candidate(self, app: LLMAppConfig, model: str, version: str) -> LLMCandidate:
        from mlplat.llm._registry import model_folder

        folder = model_folder(self.cfg, app, version)
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return LLMCandidate(name=model, version=version, folder=folder, config=config)

    def candidate_gates(self, app: LLMAppConfig, model: str, version: str,
                        candidate: LLMCandidate, production: str | None) -> list[GateResult]:
        """Gates before any traffic: the files an engine needs, and a tokenizer like
        production's (the router answers one OpenAI endpoint with both versions)."""
        has_config = bool(candidate.config.get("model_type"))
        tokenizer = [p.name for p in candidate.folder.glob("tokenizer*.json")]
        results = [
            GateResult(name="model_files", passed=has_config and bool(tokenizer),
                       detail=(f"{candidate.folder}: config.json (model_type "
                               f"{candidate.config.get('model_type')!r}), tokenizer {tokenizer}")
                       if has_config and tokenizer else
                       f"{candidate.folder} lacks config.json with a model_type or a "
                       "tokenizer*.json: build or register the full model folder"),
        ]
        if production is not None:
            try:
                prod = self.load_candidate(app, model, production).config
            except Exception as exc:
                prod = {}
                why = f"production v{production} unreadable ({type(exc).__name__}: {exc})"
            else:
                why = ""
            same = prod.get("vocab_size") == candidate.config.get("vocab_size")
            results.append(GateResult(
                name="vocabulary", passed=bool(prod) and same,
                detail=why or (f"vocab_size {candidate.config.get('vocab_size')} "
                               f"{'equals' if same else 'differs from'} production "
                               f"v{production}'s {prod.get('vocab_size')}")))
        return results

    def gate_extras(self, app: LLMAppConfig, model: str, version: str, candidate: Any,
                    production: str | None) -> tuple[float | None, list[GateResult]]:
        return None, []  # candidate_gates replaces the tabular gates

    def stage_gate(self, app: LLMAppConfig, baseline: str, candidate: str,
                   stage: str) -> GateResult | None:
        """The text gate, when the shadow stage would pass: the shadow's answers must be like
        production's (mean similarity ≥ ``slos.llm.min_shadow_similarity``)."""
        if stage != SHADOW_STAGE:
            return None
        bound = self.cfg.slos.llm.min_shadow_similarity
        try:
            pair = self._shadow_report(app)["comparisons"].get(
                f"{baseline}->{candidate}") or {}
        except Exception as exc:
            return GateResult(name="shadow_similarity", passed=False,
                              detail=f"no shadow report from the router: {exc}")
        n, mean = pair.get("comparisons", 0), pair.get("mean_similarity")
        if not n or mean is None:
            return GateResult(name="shadow_similarity", passed=False,
                              detail=f"no shadow comparison of v{baseline} and v{candidate}")
        passed = mean >= bound
        n_rep = pair.get("replicas")
        replicas = f" from {n_rep} replica{'' if n_rep == 1 else 's'}" if n_rep else ""
        return GateResult(
            name="shadow_similarity", passed=passed,
            detail=f"mean similarity {mean:.3f} {'≥' if passed else '<'} {bound:g} over {n} "
            f"shadow answers{replicas} (exact match {pair.get('exact_match_rate') or 0:.2f}; "
            "platform.yaml slos.llm.min_shadow_similarity)")

    def _shadow_report(self, app: LLMAppConfig) -> dict[str, Any]:
        if self._shadow_comparisons is not None:
            return {"comparisons": self._shadow_comparisons(app.name)}
        from mlplat.llm._api import llm_shadow_report

        return llm_shadow_report(self.cfg, app.name)

    def rollback_target_check(self, app: LLMAppConfig, model: str, version: str) -> GateResult:
        try:
            folder = self.load_candidate(app, model, version).folder
        except Exception as exc:
            return GateResult(name="rollback_target", passed=False,
                              detail=f"v{version} files unavailable: {exc}")
        return GateResult(name="rollback_target", passed=True,
                          detail=f"v{version} files at {folder} (LLMs look up no features)")

    def staging_version(self, model: str) -> str | None:
        return self._registry.staging_version(model)

    def set_aliases(self, model: str, aliases: dict[str, str | None]) -> str | None:
        return self._registry.set_aliases(model, aliases)

    def alert(self, app: LLMAppConfig, severity: str, summary: str,
              labels: dict[str, str]) -> str:
        from mlplat.deployment import post_alert

        return post_alert(self.cfg, severity, summary, labels, app.team)
