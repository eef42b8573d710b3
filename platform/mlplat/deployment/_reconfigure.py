"""Waiting for a router's ``user_config`` change to be in force, shared by both routers.

A traffic change is a ``serve._run`` of the same application with a new ``user_config``; Serve
reconfigures the replicas after the call returns. The changer waits until a replica runs the
*whole* new config (a change of faults or stable alone keeps the split, and a next change that
read the config back before it landed would undo it).

Two changers may race (the SLO guard's rollback and a person's ``set_traffic``; the promotion
controller and the guard). Serve keeps the last ``serve._run``. The one that lost would wait
for a config that never comes and hold its caller (the guard's tick thread) until the rollback
deadline. Each change carries ``issued_at``: a replica running a *later* change than ours means
ours was superseded, and the wait ends there with a ``ConflictError`` naming the winner (so the
loser prunes nothing and a promotion does not record a stage it never got). A replica still
running an earlier one (Serve reconfigures replicas one by one) is waited for.

Example:
    >>> wait_for_user_config("fraud", read, wanted, deadline)   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlplat.deployment._types import RouterUserConfig
from mlplat.errors import ConflictError, InfraError

POLL_S = 0.1
"""How often the replica's config is read back while waiting."""


def wait_for_user_config(
    app_name: str,
    read: Callable[[float], dict[str, Any] | None],
    wanted: RouterUserConfig,
    deadline: float,
    *,
    poll_s: float = POLL_S,
) -> None:
    """Wait until a router replica of ``app_name`` runs ``wanted``.

    Args:
        app_name: The router's Serve application (named in the timeout message).
        read: ``timeout_s -> user_config`` of one replica (its ``user_config_state``; None
            while it has none).
        wanted: The config this change deployed (with its ``issued_at``).
        deadline: ``time.monotonic()`` by which it must be in force.
        poll_s: Polling interval.

    Raises:
        ConflictError: a later change (``issued_at``) superseded this one; it names that split.
        InfraError: ``wanted`` was not in force before ``deadline``.

    Example:
        >>> wait_for_user_config("fraud", lambda t: wanted.model_dump(mode="json"),
        ...                      wanted, time.monotonic() + 5)
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InfraError(
                f"app '{app_name}' did not adopt traffic "
                f"{wanted.split.model_dump(mode='json')} before its deadline (Serve is still "
                f"reconfiguring its replicas; see `serve status`)."
            )
        state = read(remaining)
        if state is not None:
            running = RouterUserConfig.model_validate(state)
            if running == wanted:
                return
            if _later(running, wanted):
                raise ConflictError(
                    f"traffic change {wanted.split.model_dump(mode='json')} of app '{app_name}' "
                    f"was overtaken by a later one before it took effect: the app now runs "
                    f"{running.split.model_dump(mode='json')}. Read the split again "
                    f"(`mlplat deploy status`) and change it from there.")
        time.sleep(poll_s)


def _later(running: RouterUserConfig, wanted: RouterUserConfig) -> bool:
    return (running.issued_at is not None and wanted.issued_at is not None
            and running.issued_at > wanted.issued_at)
