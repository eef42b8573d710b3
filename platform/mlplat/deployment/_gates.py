"""Promotion gates: checks a candidate version must pass before it sees any traffic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlplat.contracts.v1 import FeatureSpec, GateResult

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig


def _metric_gate(app: AppConfig, metrics: dict[str, float]) -> GateResult:
    name, floor = app.serving.gate_metric, app.serving.gate_min
    if name not in metrics:
        return GateResult(
            name="metric",
            passed=False,
            detail=f"candidate has no '{name}' metric (it has {sorted(metrics)}); "
            f"log it at training time — app.yaml serving.gate_metric requires it.",
        )
    value = float(metrics[name])
    passed = value >= floor
    return GateResult(
        name="metric",
        passed=passed,
        detail=f"{name} = {value:.4g} {'≥' if passed else '<'} {floor:.4g} "
        "(app.yaml serving.gate_min)",
    )


def _diff(label: str, expected: list[str], got: list[str]) -> list[str]:
    missing = [x for x in expected if x not in got]
    extra = [x for x in got if x not in expected]
    out = []
    if missing:
        out.append(f"{label} missing from candidate: {missing}")
    if extra:
        out.append(f"{label} the serving contract does not have: {extra}")
    if not missing and not extra and expected != got:
        out.append(f"{label} in a different order: expected {expected}, got {got}")
    return out


def schema_differences(contract: FeatureSpec, candidate: FeatureSpec) -> list[str]:
    """What separates ``candidate`` from the serving ``contract`` (empty when they match).

    Entity keys, looked-up features (``view:feature``) and request features are compared;
    the label and timestamp column are training-only and ignored.

    Example:
        >>> schema_differences(app.features, model.feature_spec)   # doctest: +SKIP
        ["request features missing from candidate: ['amount']"]
    """
    return (
        _diff("entity keys", contract.entity_keys, candidate.entity_keys)
        + _diff("looked-up features", sorted(contract.feature_refs()),
                sorted(candidate.feature_refs()))
        + _diff("request features", sorted(contract.request_features),
                sorted(candidate.request_features))
    )


def _schema_gate(app: AppConfig, spec: FeatureSpec | None) -> GateResult:
    if spec is None:
        return GateResult(name="schema", passed=False,
                          detail="candidate carries no feature spec; register it with one.")
    diffs = schema_differences(app.features, spec)
    if diffs:
        return GateResult(name="schema", passed=False,
                          detail="feature spec differs from the serving contract (app.yaml "
                          "features): " + "; ".join(diffs))
    return GateResult(name="schema", passed=True,
                      detail=f"feature spec matches the serving contract "
                      f"({len(spec.feature_names())} features, entity keys {spec.entity_keys})")


def _card_gate(app: AppConfig, candidate: Any) -> GateResult:
    card = getattr(candidate, "card", None)
    if card is None:
        return GateResult(name="model_card", passed=False,
                          detail="candidate has no model card; training must register one.")
    name = getattr(candidate, "name", None) or app.name
    version = getattr(candidate, "version", None)
    problems = []
    if card.model != name:
        problems.append(f"card.model is '{card.model}', expected '{name}'")
    if version is not None and card.version != str(version):
        problems.append(f"card.version is '{card.version}', expected '{version}'")
    if card.team != app.team:
        problems.append(f"card.team is '{card.team}', but app '{app.name}' belongs to "
                        f"'{app.team}'")
    if problems:
        return GateResult(name="model_card", passed=False,
                          detail="model card does not describe this version: "
                          + "; ".join(problems))
    return GateResult(name="model_card", passed=True,
                      detail=f"model card present for {card.model} v{card.version} "
                      f"(team {card.team}, dataset {card.training_dataset_sha256[:12]})")


def _drift_gate(cfg: PlatformConfig, share_drifted: float) -> GateResult:
    limit = cfg.promotion.max_reference_drift
    passed = share_drifted <= limit
    return GateResult(name="drift", passed=passed,
                      detail=f"reference-vs-recent drift share {share_drifted:.3g} "
                      f"{'≤' if passed else '>'} {limit:.3g} (platform.yaml "
                      "promotion.max_reference_drift)")


def evaluate_gates(
    cfg: PlatformConfig, app: AppConfig, candidate: Any, *, drift_share: float | None = None
) -> list[GateResult]:
    """Run the promotion gates for ``candidate`` (anything with ``.metrics``, ``.card``,
    ``.feature_spec`` and optionally ``.name`` / ``.version``).

    Gates: metric (``serving.gate_metric ≥ serving.gate_min``), schema (feature spec equals the
    app's serving contract), model card (present, names this model/version/team), and — when
    the caller measured it — drift (``drift_share ≤ promotion.max_reference_drift``).

    Returns:
        One ``GateResult`` per gate, each with a human detail line.

    Example:
        >>> results = evaluate_gates(cfg, app, load_model_version(cfg, "fraud", "4"))  # doctest: +SKIP
        >>> gates_passed(results), [r.detail for r in results if not r.passed]          # doctest: +SKIP
        (True, [])
    """
    results = [
        _metric_gate(app, dict(getattr(candidate, "metrics", None) or {})),
        _schema_gate(app, getattr(candidate, "feature_spec", None)),
        _card_gate(app, candidate),
    ]
    if drift_share is not None:
        results.append(_drift_gate(cfg, drift_share))
    return results


def gates_passed(results: list[GateResult]) -> bool:
    """True when there is at least one gate and every gate passed.

    Example:
        >>> gates_passed([GateResult(name="metric", passed=True, detail="ok")])
        True
    """
    return bool(results) and all(r.passed for r in results)
