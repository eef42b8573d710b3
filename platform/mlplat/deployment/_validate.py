"""Checks a raw predict body against the app's serving contract, naming the offending field.

Bad input is always a 4xx with ``{"error": ..., "field": ...}``; it must never reach the model
and turn into a 500.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mlplat._body import BODY_FIELD, load_json_body
from mlplat.config import RequestLimits
from mlplat.contracts.v1 import FeatureSpec, PredictRequest
from mlplat.errors import RequestError as RequestError
from mlplat.errors import did_you_mean

_TOP_LEVEL = ("entity", "features", "request_id")
_DEFAULT_LIMITS = RequestLimits()

def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` for an amount is a caller bug, not 1.0.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_keys(
    given: dict[str, Any], expected: list[str], prefix: str, what: str
) -> None:
    for name in expected:
        if name not in given:
            raise RequestError(
                f"missing {what} '{name}'; the serving contract expects {what}s {expected}.",
                f"{prefix}.{name}",
            )
    for name in given:
        if name not in expected:
            raise RequestError(
                f"unknown {what} '{name}'.{did_you_mean(name, expected)} "
                f"The serving contract expects {what}s {expected}.",
                f"{prefix}.{name}",
            )


def parse_predict_request(
    raw: bytes | str,
    spec: FeatureSpec,
    numeric: Collection[str] = (),
    categorical: Collection[str] = (),
    limits: RequestLimits = _DEFAULT_LIMITS,
) -> PredictRequest:
    """Parse and check a predict body against ``spec``.

    Args:
        raw: The HTTP body.
        spec: The app's serving contract (entity keys and request-time features).
        numeric: Request features that must be numbers (from the model's preprocessor).
        categorical: Request features that must be strings.
        limits: Body size and nesting (platform.yaml ``requests``); numbers must be finite
            and integers within int64 whatever the limits.

    Returns:
        The validated request.

    Raises:
        RequestError: a body over the size limit (413), malformed or too deeply nested JSON,
            a non-finite number, a missing/extra/wrong-typed key; ``field`` names it.

    Example:
        >>> from mlplat.contracts.v1 import FeatureSpec, FeatureViewRef
        >>> spec = FeatureSpec(entity_keys=["account_id"], label="y",
        ...     feature_views=[FeatureViewRef(name="v", features=["f"], ttl_s=60)],
        ...     request_features=["amount"])
        >>> parse_predict_request(b'{"entity": {"account_id": 1}, "features": {"amount": 2.5}}',
        ...                       spec).entity
        {'account_id': 1}
    """
    body = load_json_body(raw, limits)
    if not isinstance(body, dict):
        raise RequestError(
            f"request body must be a JSON object with keys {list(_TOP_LEVEL)}, "
            f"got {_type_name(body)}.",
            BODY_FIELD,
        )
    for key in body:
        if key not in _TOP_LEVEL:
            raise RequestError(
                f"unknown key '{key}'.{did_you_mean(key, _TOP_LEVEL)} "
                f"A predict body has keys {list(_TOP_LEVEL)}.",
                key,
            )

    entity = body.get("entity")
    if not isinstance(entity, dict):
        raise RequestError(
            f"'entity' must be an object of entity keys {spec.entity_keys}, "
            f"got {_type_name(entity)}.",
            "entity",
        )
    _check_keys(entity, spec.entity_keys, "entity", "entity key")
    for name, value in entity.items():
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            raise RequestError(
                f"entity key '{name}' must be an integer or a string, got {_type_name(value)} "
                f"({value!r}).",
                f"entity.{name}",
            )

    features = body.get("features", {})
    if not isinstance(features, dict):
        raise RequestError(
            f"'features' must be an object of request features {spec.request_features}, "
            f"got {_type_name(features)}.",
            "features",
        )
    _check_keys(features, list(spec.request_features), "features", "request feature")
    for name, value in features.items():
        if value is None:
            continue  # explicitly unknown: the preprocessor fills it, the response says so
        if name in numeric and not _is_number(value):
            raise RequestError(
                f"request feature '{name}' must be a number, got {_type_name(value)} ({value!r}).",
                f"features.{name}",
            )
        if name in categorical and not isinstance(value, str):
            raise RequestError(
                f"request feature '{name}' must be a string, got {_type_name(value)} "
                f"({value!r}).",
                f"features.{name}",
            )
        if not (isinstance(value, str) or _is_number(value)):
            raise RequestError(
                f"request feature '{name}' must be a number, a string or null, got "
                f"{_type_name(value)}.",
                f"features.{name}",
            )

    request_id = body.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(
            f"'request_id' must be a string, got {_type_name(request_id)}.", "request_id"
        )
    return PredictRequest(entity=entity, features=features, request_id=request_id or None)
