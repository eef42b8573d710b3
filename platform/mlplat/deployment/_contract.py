"""The serving contract (``apps/<app>/contract.yaml``) and the gate comparing a candidate to it.

The contract is what callers depend on: entity keys, request features with their JSON types,
the looked-up features, and the output. A candidate's input schema is read from its feature
spec and preprocessor (numeric → ``number``, categorical → ``string``); its output schema is
probed by scoring one row with every feature unknown.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlplat.contracts.v1 import GateResult
from mlplat.errors import NotFoundError, UserError

if TYPE_CHECKING:
    from mlplat.apps import AppConfig

CONTRACT_FILE = "contract.yaml"
JsonType = Literal["integer", "number", "string"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContractInput(_Strict):
    entity_keys: dict[str, Literal["integer", "string"]] = Field(min_length=1)
    request_features: dict[str, JsonType] = Field(default_factory=dict)
    looked_up_features: list[str] = Field(default_factory=list,
                                          description="Feast refs, view:feature.")


class ContractScore(_Strict):
    type: Literal["number"] = "number"
    minimum: float = 0.0
    maximum: float = 1.0


class ContractOutput(_Strict):
    score: ContractScore = ContractScore()


class ServingContract(_Strict):
    """``apps/<app>/contract.yaml``: the input and output every served version must honour."""

    input: ContractInput
    output: ContractOutput = ContractOutput()


def load_contract(app: AppConfig) -> ServingContract:
    """Read and validate ``apps/<app>/contract.yaml``.

    Raises:
        NotFoundError: the app has no contract file.
        UserError: the file is not valid YAML or breaks the schema (key path named).

    Example:
        >>> load_contract(load_app("fraud", cfg)).input.request_features["amount"]  # doctest: +SKIP
        'number'
    """
    path = Path(app.path) / CONTRACT_FILE
    if not path.is_file():
        raise NotFoundError(
            f"app '{app.name}' has no serving contract at {path}; write one (see "
            "apps/fraud/contract.yaml) — the promotion gate compares candidates with it."
        )
    try:
        return ServingContract.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise UserError(f"{path}: invalid serving contract: {problems}") from exc


def candidate_input_schema(candidate: Any) -> ContractInput | None:
    """The candidate's input schema from its feature spec and preprocessor (None: no spec)."""
    spec = getattr(candidate, "feature_spec", None)
    if spec is None:
        return None
    pre = getattr(candidate, "preprocessor", None)
    numeric = {c.name for c in getattr(pre, "numeric", [])}
    categorical = {c.name for c in getattr(pre, "categorical", [])}

    def kind(name: str) -> JsonType:
        return "string" if name in categorical else "number" if name in numeric else "string"

    return ContractInput.model_construct(
        entity_keys={k: "integer" for k in spec.entity_keys},
        request_features={f: kind(f) for f in spec.request_features},
        looked_up_features=list(spec.feature_refs()),
    )


def contract_differences(contract: ServingContract, candidate: Any) -> list[str]:
    """What separates ``candidate``'s input/output schema from ``contract`` (empty: equal)."""
    got = candidate_input_schema(candidate)
    if got is None:
        return ["candidate carries no feature spec"]
    want = contract.input
    out = []
    if sorted(want.entity_keys) != sorted(got.entity_keys):
        out.append(f"entity keys {sorted(got.entity_keys)} ≠ contract {sorted(want.entity_keys)}")
    if want.request_features != got.request_features:
        out.append(f"request features {got.request_features} ≠ contract "
                   f"{want.request_features}")
    if sorted(want.looked_up_features) != sorted(got.looked_up_features):
        missing = sorted(set(want.looked_up_features) - set(got.looked_up_features))
        extra = sorted(set(got.looked_up_features) - set(want.looked_up_features))
        out.append(f"looked-up features differ (missing {missing}, extra {extra})")
    spec = candidate.feature_spec
    try:
        scores = candidate.predict_proba([{n: None for n in spec.feature_names()}])
        score = float(scores[0])
    except Exception as exc:
        out.append(f"output probe failed: {type(exc).__name__}: {exc}")
    else:
        lo, hi = contract.output.score.minimum, contract.output.score.maximum
        if not lo <= score <= hi:
            out.append(f"output score {score} outside the contract's [{lo}, {hi}]")
    return out


def contract_gate(app: AppConfig, candidate: Any) -> GateResult:
    """Gate ``contract``: the candidate's input/output schema equals ``contract.yaml``."""
    try:
        contract = load_contract(app)
    except (NotFoundError, UserError) as exc:
        return GateResult(name="contract", passed=False, detail=str(exc))
    diffs = contract_differences(contract, candidate)
    if diffs:
        return GateResult(name="contract", passed=False,
                          detail=f"differs from apps/{app.name}/{CONTRACT_FILE}: "
                          + "; ".join(diffs))
    return GateResult(name="contract", passed=True,
                      detail=f"input/output schema equals apps/{app.name}/{CONTRACT_FILE}")
