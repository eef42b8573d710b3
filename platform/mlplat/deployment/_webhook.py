"""Verifying MLflow registry webhooks (MLflow 3: HMAC-SHA256 over ``id.timestamp.payload``).

MLflow's tracking server signs each delivery: header ``X-MLflow-Signature: v1,<base64>`` over
``f"{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{body}"`` with the webhook's secret (see
``mlflow/webhooks/delivery.py``). A delivery older than ``MAX_AGE_S`` is refused (replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"
MAX_AGE_S = 300.0


class WebhookError(Exception):
    """A delivery that must be refused: ``status`` (401/400) and the header/field at fault."""

    def __init__(self, message: str, status: int, field: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def sign(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    """MLflow's signature of a delivery (what the server sends in ``X-MLflow-Signature``).

    Example:
        >>> sign("s", "d", "1", "{}")[:3]
        'v1,'
    """
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{payload}".encode(),
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_mlflow_webhook(secret: str, headers: Mapping[str, str], body: bytes,
                          now: float) -> dict[str, Any]:
    """Check a delivery's signature and age; returns the parsed event.

    Raises:
        WebhookError: 401 for a missing/wrong signature or a stale timestamp, 400 for a body
            that is not a JSON object.

    Example:
        >>> body = b'{"entity": "model_version_alias", "action": "created", "data": {}}'
        >>> h = {"x-mlflow-delivery-id": "d", "x-mlflow-timestamp": "100",
        ...      "x-mlflow-signature": sign("s", "d", "100", body.decode())}
        >>> verify_mlflow_webhook("s", h, body, now=100.0)["action"]
        'created'
    """
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER)
    delivery_id = lower.get(DELIVERY_ID_HEADER)
    timestamp = lower.get(TIMESTAMP_HEADER)
    if not signature or not delivery_id or not timestamp:
        raise WebhookError("unsigned webhook delivery: X-MLflow-Signature, X-MLflow-Delivery-Id "
                           "and X-MLflow-Timestamp are required.", 401, SIGNATURE_HEADER)
    try:
        payload = body.decode("utf-8")
        age = abs(now - float(timestamp))
    except (UnicodeDecodeError, ValueError):
        raise WebhookError("webhook timestamp or body is malformed.", 401,
                           TIMESTAMP_HEADER) from None
    expected = sign(secret, delivery_id, timestamp, payload)
    if not hmac.compare_digest(expected, signature):
        raise WebhookError("webhook signature does not match the configured webhook_secret.",
                           401, SIGNATURE_HEADER)
    if age > MAX_AGE_S:
        raise WebhookError(f"webhook delivery is {age:.0f} s old (> {MAX_AGE_S:.0f} s): refused "
                           "as a possible replay.", 401, TIMESTAMP_HEADER)
    try:
        event = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise WebhookError(f"webhook body is not JSON: {exc}", 400, "<body>") from exc
    if not isinstance(event, dict):
        raise WebhookError("webhook body must be a JSON object.", 400, "<body>")
    return event
