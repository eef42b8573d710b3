"""``audit_sink`` / ``audited``: how a plane records a privileged action in the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from mlplat.errors import InfraError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig


class AuditSink(Protocol):
    """``AuditLog.append``'s signature (a test passes a list-appending fake)."""

    def __call__(self, actor: str, action: str, target: str, reason: str = "",
                 details: dict[str, Any] | None = None, outcome: str = "ok") -> Any: ...


def audit_sink(cfg: PlatformConfig) -> AuditSink:
    """The audit log for ``cfg``, opened before the action it records.

    Opening it first means an action that could not be audited is never taken.

    Raises:
        InfraError: the audit store cannot be opened.
    """
    from mlplat.audit._log import AuditLog

    try:
        log = AuditLog(cfg)
    except Exception as exc:
        raise InfraError(
            f"cannot open the audit log ({type(exc).__name__}: {exc}); the privileged "
            "action was not performed. Check the profile's 'audit' store."
        ) from exc
    return log.append  # type: ignore[no-any-return]


@contextmanager
def audited(
    sink: AuditSink | Callable[..., Any],
    *,
    actor: str,
    action: str,
    target: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run the body as one privileged action and append its outcome to the audit log.

    The body may add to the yielded details dict (e.g. the endpoint it created). A failure is
    recorded with ``outcome="failed"`` and the error, then re-raised.

    Example:
        >>> with audited(sink, actor="alice", action="deploy", target="fraud") as d:  # doctest: +SKIP
        ...     d["url"] = deploy_it()
    """
    extra: dict[str, Any] = dict(details or {})
    try:
        yield extra
    except BaseException as exc:
        extra["error"] = f"{type(exc).__name__}: {exc}"
        try:
            sink(actor, action, target, reason=reason, details=extra, outcome="failed")
        except Exception:  # surface the action's own error, not the audit's
            pass
        raise
    try:
        sink(actor, action, target, reason=reason, details=extra, outcome="ok")
    except Exception as exc:
        raise InfraError(
            f"'{action}' on '{target}' took effect but could not be written to the audit log "
            f"({type(exc).__name__}: {exc}); record it by hand and check the audit store."
        ) from exc
