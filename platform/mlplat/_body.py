"""Loading an HTTP request body, the same way on every route: size, nesting, numbers.

The one place a route turns bytes into JSON. Before any route-specific check a body must be
at most ``requests.max_body_bytes`` (413, refused before it is parsed), valid UTF-8 JSON,
nested at most ``requests.max_json_depth`` deep, and hold only finite numbers (no ``NaN``,
``Infinity`` or a literal past ±1.8e308, which JSON parsers turn into one) and integers within
a signed 64-bit range (what every typed consumer — Feast keys, torch, samplers' seeds —
accepts). Each refusal is a ``RequestError`` naming the field and the allowed range.

Example:
    >>> load_json_body(b'{"features": {"amount": 12.5}}', RequestLimits())
    {'features': {'amount': 12.5}}
    >>> load_json_body(b'{"features": {"amount": Infinity}}', RequestLimits())
    Traceback (most recent call last):
    mlplat.errors.RequestError: features.amount: Infinity is not a finite number; ...
"""

from __future__ import annotations

import json
import math
from typing import Any

from mlplat.config import RequestLimits
from mlplat.errors import RequestError

BODY_FIELD = "<body>"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def load_json_body(raw: bytes | str, limits: RequestLimits) -> Any:
    """``raw`` parsed, or a ``RequestError`` (4xx) naming what is wrong and where.

    Raises:
        RequestError: 413 over ``max_body_bytes``; 400 for invalid JSON, nesting deeper than
            ``max_json_depth``, a non-finite number or an integer outside int64.
    """
    size = len(raw)
    if size > limits.max_body_bytes:
        raise RequestError(
            f"request body is {size} bytes; the limit is {limits.max_body_bytes} "
            "(platform.yaml requests.max_body_bytes).", BODY_FIELD, status=413)
    try:
        data = json.loads(raw or b"null")
    except RecursionError as exc:
        raise RequestError(
            f"request body nests deeper than {limits.max_json_depth} levels "
            "(platform.yaml requests.max_json_depth).", BODY_FIELD) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}", BODY_FIELD) from exc
    except ValueError as exc:  # an integer literal over Python's 4,300-digit limit
        raise RequestError(f"request body holds a number too large: {exc}", BODY_FIELD) from exc
    _check(data, limits.max_json_depth)
    return data


def _check(data: Any, max_depth: int) -> None:
    # Iterative: a body is never walked with Python recursion.
    stack: list[tuple[Any, tuple[str, ...], int]] = [(data, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                raise RequestError(
                    f"{_name(path)}: nested deeper than {max_depth} levels "
                    "(platform.yaml requests.max_json_depth).", _name(path))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*path, str(k)), depth + 1) for k, v in items)
        elif isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise RequestError(
                f"{_name(path)}: {shown} is not a finite number; send a finite number "
                "(|x| < 1.8e308) or null for an unknown value.", _name(path))
        elif isinstance(value, int) and not isinstance(value, bool) \
                and not INT64_MIN <= value <= INT64_MAX:
            raise RequestError(
                f"{_name(path)}: {value} is outside the 64-bit integer range "
                f"[{INT64_MIN}, {INT64_MAX}].", _name(path))


def _name(path: tuple[str, ...]) -> str:
    return ".".join(path) or BODY_FIELD
