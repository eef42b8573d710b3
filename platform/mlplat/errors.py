"""The error hierarchy every plane raises.

``UserError`` is the caller's fault (bad config, bad request, a failed gate): it is never
retried and maps to a 4xx at HTTP boundaries. ``InfraError`` means a backend is down or
misbehaving: it is retryable and maps to a 503.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MlplatError(Exception):
    """Base class of every error mlplat raises on purpose."""

    http_status: int = 500


class UserError(MlplatError, ValueError):
    """The input is wrong; the message says which value and how to fix it."""

    http_status = 400


class RequestError(UserError):
    """An HTTP request body breaks its route's contract; ``field`` names where
    (``features.amount``, ``messages.0.role``, ``<body>`` for the body as a whole). A 400 unless
    ``status`` says otherwise (413: too large)."""

    def __init__(self, message: str, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.http_status = status


class NotFoundError(UserError):
    """A named thing (app, model, version, feature view) does not exist."""

    http_status = 404


class AuthenticationError(UserError):
    """No credential, or one that belongs to nobody in platform.yaml's ``security.people``."""

    http_status = 401


class PermissionDeniedError(UserError):
    """The authenticated person lacks the role the action needs."""

    http_status = 403


class GateBlockedError(UserError):
    """A version would get traffic without having passed the promotion gates and the shadow
    stage (or an incident commander's override); the message names the gate. Maps to a 409."""

    http_status = 409


class QuotaExceededError(UserError):
    """A request would take a team past a quota from platform.yaml."""

    http_status = 429


class ConflictError(MlplatError):
    """The action lost a race to a later one (a traffic change overtaken before it took effect);
    nothing of it is left half-applied. Maps to a 409."""

    http_status = 409


class InfraError(MlplatError):
    """A backend (Ray, MLflow, Redis, storage) is unavailable; retrying may help."""

    http_status = 503


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` if none is close.

    Example:
        >>> did_you_mean("risc", ["risk", "search"])
        " Did you mean 'risk'?"
    """
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""
