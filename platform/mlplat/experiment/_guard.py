"""Guarded registry changes: deleting versions or cards in production use, editing cards.

"In production use" means the version holds one of the aliases the deployment plane keeps in
sync with live traffic — ``production``, ``canary`` or ``shadow``. Deleting such a version (or
its card) is refused with ``VersionInUseError`` and the refusal is audited; every allowed
delete and every card edit is audited too (``mlplat.audit.AuditLog``).

``governance_webhook_app`` exposes the same check as a Kubernetes validating admission webhook
(``POST /v1/admission/model-versions``, AdmissionReview v1), so deleting a ``ModelVersion``
object through the Kubernetes API is refused for the same versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import ModelCard
from mlplat.errors import InfraError, MlplatError, NotFoundError, UserError
from mlplat.experiment._card_store import CARD_SHA_TAG, REVISION_TAG, read_revisions, write_card
from mlplat.experiment._cards import card_sha256
from mlplat.experiment._registry import _model_version, _registered_model
from mlplat.experiment._store import client, tracking_uri

if TYPE_CHECKING:
    from fastapi import FastAPI

PROTECTED_ALIASES = ("production", "canary", "shadow")
"""Aliases that mean "serving live traffic" (the deployment plane keeps them in sync)."""
EDITABLE_CARD_FIELDS = ("owner", "description", "intended_use", "limitations")
"""What a card edit may change; hashes, metrics and evaluations are facts of the version."""
ADMISSION_PATH = "/v1/admission/model-versions"
MODEL_LABEL = "mlplat.io/model"
VERSION_LABEL = "mlplat.io/version"


class VersionInUseError(UserError):
    """The version is referenced by a live deployment; it cannot be deleted."""

    http_status = 409


@dataclass(frozen=True)
class DeleteDecision:
    """Whether ``model`` v``version`` may be deleted, and why not."""

    model: str
    version: str
    allowed: bool
    referenced_by: list[str] = field(default_factory=list)
    message: str = ""


def check_delete(cfg: PlatformConfig, model: str, version: str) -> DeleteDecision:
    """May ``model`` v``version`` (or its card) be deleted? No while a live alias points at it.

    Raises:
        NotFoundError: unknown model or version.
        InfraError: the registry is unreachable.

    Example:
        >>> check_delete(cfg, "fraud", "3").allowed
        False
    """
    _model_version(cfg, model, version)
    aliases = getattr(_registered_model(cfg, model), "aliases", None) or {}
    live = sorted(a for a, v in aliases.items() if str(v) == str(version) and a in PROTECTED_ALIASES)
    if live:
        return DeleteDecision(
            model, str(version), False, live,
            f"{model} v{version} is serving live traffic (alias {', '.join(live)}); deleting it "
            "would break that deployment. Move the alias to another version first (promote or "
            f"roll back), e.g. `mlplat rollback {model}`, then delete.",
        )
    return DeleteDecision(model, str(version), True, [], f"{model} v{version} is not in use.")


def _audit(cfg: PlatformConfig, actor: str, action: str, target: str, reason: str,
           details: dict[str, Any], outcome: str) -> None:
    from mlplat.audit import AuditLog

    AuditLog(cfg).append(actor, action, target, reason=reason, details=details, outcome=outcome)


def _guarded(cfg: PlatformConfig, model: str, version: str, *, actor: str, reason: str,
             action: str) -> None:
    decision = check_delete(cfg, model, version)
    if not decision.allowed:
        _audit(cfg, actor, action, f"{model}/{version}", reason,
               {"referenced_by": decision.referenced_by}, "denied")
        raise VersionInUseError(decision.message)


def delete_model_version(
    cfg: PlatformConfig, model: str, version: str, *, actor: str, reason: str = ""
) -> None:
    """Delete a version from the registry unless a live deployment uses it; audited.

    Raises:
        VersionInUseError: the version holds a production/canary/shadow alias (audited as
            ``denied``).
        NotFoundError: unknown model or version.
        InfraError: the registry (or the audit log) failed.

    Example:
        >>> delete_model_version(cfg, "fraud", "1", actor="alice", reason="superseded")
    """
    from mlflow.exceptions import MlflowException

    _guarded(cfg, model, version, actor=actor, reason=reason, action="delete_model_version")
    try:
        client(cfg).delete_model_version(model, str(version))
    except MlflowException as exc:
        _audit(cfg, actor, "delete_model_version", f"{model}/{version}", reason,
               {"error": str(exc)[:500]}, "failed")
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed deleting {model} v{version}: "
                         f"{exc}") from exc
    _audit(cfg, actor, "delete_model_version", f"{model}/{version}", reason, {}, "ok")


def delete_model_card(
    cfg: PlatformConfig, model: str, version: str, *, actor: str, reason: str = ""
) -> None:
    """Remove every card revision of a version (it becomes incomplete: not loadable, not
    deployable) unless a live deployment uses it; audited.

    Raises:
        VersionInUseError: the version is serving live traffic.
        NotFoundError: unknown model or version.
    """
    from mlflow.exceptions import MlflowException

    mv = _model_version(cfg, model, version)
    _guarded(cfg, model, version, actor=actor, reason=reason, action="delete_model_card")
    c = client(cfg)
    keys = [k for k in (mv.tags or {}) if k.startswith("mlplat.card.") or k == CARD_SHA_TAG]
    # The "complete" marker goes first, so a half-finished delete reads as "no card".
    keys.sort(key=lambda k: (k != CARD_SHA_TAG, k != REVISION_TAG, k))
    try:
        for key in keys:
            c.delete_model_version_tag(model, str(version), key)
    except MlflowException as exc:
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed: {exc}") from exc
    _audit(cfg, actor, "delete_model_card", f"{model}/{version}", reason,
           {"card_sha256": (mv.tags or {}).get(CARD_SHA_TAG, "")}, "ok")


def edit_model_card(
    cfg: PlatformConfig,
    model: str,
    version: str,
    changes: dict[str, Any],
    *,
    actor: str,
    reason: str,
) -> ModelCard:
    """Append a new card revision with ``changes`` applied; earlier revisions stay readable.

    Args:
        changes: Field → new value; only ``EDITABLE_CARD_FIELDS`` may change.
        actor: Who edits (audited).
        reason: Why (required, audited).

    Returns:
        The new head revision (``revision`` = previous + 1, ``previous_sha256`` linked).

    Raises:
        UserError: no reason, an unknown or immutable field, or a bad value.
        NotFoundError: unknown model/version, or the version has no card.
        CardIntegrityError: the stored revisions were tampered with.

    Example:
        >>> edit_model_card(cfg, "fraud", "3", {"limitations": "Not for new accounts."},
        ...                 actor="alice", reason="review 2025-Q1").revision
        2
    """
    from mlflow.exceptions import MlflowException

    if not reason.strip():
        raise UserError("A card edit needs a reason (it is audited), e.g. reason='Q1 review'.")
    if not changes:
        raise UserError(f"Nothing to change; editable fields: {list(EDITABLE_CARD_FIELDS)}.")
    bad = sorted(set(changes) - set(EDITABLE_CARD_FIELDS))
    if bad:
        raise UserError(
            f"Card field(s) {bad} cannot be edited: they are facts of the registered version. "
            f"Editable: {list(EDITABLE_CARD_FIELDS)}. Register a new version to change the rest."
        )
    mv = _model_version(cfg, model, version)
    head = read_revisions(model, str(mv.version), dict(mv.tags or {}))[-1]
    try:
        new = ModelCard.model_validate({
            **head.model_dump(), **changes, "revision": head.revision + 1,
            "previous_sha256": card_sha256(head), "created_at": datetime.now(UTC),
        })
    except ValueError as exc:
        raise UserError(f"Invalid card edit {changes!r}: {exc}") from exc
    try:
        sha = write_card(client(cfg), model, str(mv.version), new)
    except MlflowException as exc:
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed: {exc}") from exc
    _audit(cfg, actor, "edit_model_card", f"{model}/{version}", reason,
           {"revision": new.revision, "card_sha256": sha, "previous_sha256": new.previous_sha256,
            "fields": sorted(changes)}, "ok")
    return new


# --------------------------------------------------------------------------- admission webhook


def _review_response(uid: str, allowed: bool, message: str, code: int = 403) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": message}
    elif message:
        response["warnings"] = [message]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def _parse_review(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise UserError(
            f"Body is not JSON ({exc}); send an admission.k8s.io/v1 AdmissionReview."
        ) from exc
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise UserError("Body must be an AdmissionReview object (kind: AdmissionReview).")
    if body.get("apiVersion") != "admission.k8s.io/v1":
        raise UserError(f"apiVersion must be admission.k8s.io/v1, got {body.get('apiVersion')!r}.")
    req = body.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("uid"), str) or not req["uid"]:
        raise UserError("AdmissionReview.request.uid is missing (a non-empty string).")
    if not isinstance(req.get("operation"), str):
        raise UserError("AdmissionReview.request.operation is missing (e.g. DELETE).")
    return req


def _target(req: dict[str, Any]) -> tuple[str, str] | None:
    obj = req.get("oldObject") or req.get("object") or {}
    if not isinstance(obj, dict):
        return None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    spec = obj.get("spec") or {}
    model = labels.get(MODEL_LABEL) or spec.get("model")
    version = labels.get(VERSION_LABEL) or spec.get("version")
    if not model or not version:
        return None
    return str(model), str(version)


def admission_review(cfg: PlatformConfig, raw: bytes) -> dict[str, Any]:
    """Answer one AdmissionReview (the webhook's logic, without HTTP).

    Raises:
        UserError: the body is not an AdmissionReview v1 (the endpoint answers 400).

    Example:
        >>> admission_review(cfg, json.dumps(review).encode())["response"]["allowed"]
        False
    """
    req = _parse_review(raw)
    uid, op = req["uid"], req["operation"]
    if op != "DELETE":
        return _review_response(uid, True, "")
    target = _target(req)
    actor = str((req.get("userInfo") or {}).get("username") or "kubernetes")
    if target is None:
        return _review_response(
            uid, False,
            f"Cannot tell which model version this object is: set labels {MODEL_LABEL} and "
            f"{VERSION_LABEL} (or spec.model and spec.version).", code=400,
        )
    model, version = target
    try:
        decision = check_delete(cfg, model, version)
    except NotFoundError:
        return _review_response(uid, True, f"{model} v{version} is not in the registry.")
    except MlplatError as exc:  # fail closed: an unverifiable delete is refused
        return _review_response(uid, False, f"Cannot verify {model} v{version}: {exc}", code=503)
    _audit(cfg, actor, "delete_model_version", f"{model}/{version}", "kubernetes admission",
           {"via": "admission-webhook", "referenced_by": decision.referenced_by,
            "object": str((req.get("oldObject") or {}).get("metadata", {}).get("name", ""))},
           "ok" if decision.allowed else "denied")
    return _review_response(uid, decision.allowed, "" if decision.allowed else decision.message)


def governance_webhook_app(cfg: PlatformConfig) -> FastAPI:
    """ASGI app: ``POST /v1/admission/model-versions`` (AdmissionReview v1) and ``GET /healthz``.

    Bad bodies get 400 with a message; registry failures deny the delete (fail closed) with
    a 200 AdmissionReview, so the API server shows the reason. TLS terminates in front of it
    (the Service ``mlplat-governance:8443`` in cluster/governance-webhook.yaml).

    Example:
        >>> import uvicorn
        >>> uvicorn.run(governance_webhook_app(load_config()), host="0.0.0.0", port=8443,
        ...             ssl_certfile="tls.crt", ssl_keyfile="tls.key")
    """
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    app = FastAPI(title="mlplat governance admission webhook", docs_url=None, redoc_url=None)

    async def review(request: Request) -> JSONResponse:
        import anyio

        raw = await request.body()
        try:
            answer = await anyio.to_thread.run_sync(admission_review, cfg, raw)
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except MlplatError as exc:  # e.g. the audit log is down: still an answer, never a 500
            status = 503 if exc.http_status >= 500 else exc.http_status
            return JSONResponse({"error": str(exc)}, status_code=status)
        except Exception as exc:  # never a bare 500: the API server shows this message
            return JSONResponse({"error": f"governance webhook failed: {exc}"}, status_code=503)
        return JSONResponse(answer)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    # Plain Starlette routes: the handler takes the raw request, so FastAPI never turns a
    # malformed body into its own 422; the 400 messages above are ours.
    app.router.add_route(ADMISSION_PATH, review, methods=["POST"])
    app.router.add_route("/healthz", healthz, methods=["GET"])
    return app
