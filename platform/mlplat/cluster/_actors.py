from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from mlplat.cluster._local import pool_selector
from mlplat.config import PlatformConfig, PoolName
from mlplat.errors import InfraError

if TYPE_CHECKING:
    from ray.actor import ActorHandle

PLATFORM_NAMESPACE = "mlplat"
"""Ray namespace of the platform's own named actors (drift monitor, cost meter, …)."""
# The platform's named actors, in one place: every plane that calls one imports its name here.
CONTROLLER_ACTOR = "mlplat-promotion-controller"
"""The promotion controller (deployment plane): rollouts, gates, the production guard."""
DRIFT_MONITOR_ACTOR = "mlplat-drift-monitor"
"""The drift monitor (monitoring plane); it also runs drift-triggered retraining."""
COST_METER_ACTOR = "mlplat-cost-meter"
"""The cost meter (governance)."""
JOB_QUEUE_ACTOR = "mlplat-job-queue"
"""The priority job queue (scheduling)."""
LLM_GUARD_ACTOR = "mlplat-llm-slo-guard"
"""The LLM SLO guard, which also hosts the LLM apps' promotion controller."""
PLATFORM_POOL: PoolName = "cpu"
"""Pool the platform's own actors run on: never the training or serving capacity."""
RESTART_RETRIES = -1
"""How often Ray resubmits a ``survives_restart`` call that the actor's restart cut off: until
the new instance answers (-1), as the promotion controller's calls do. A caller bounds the wait
with ``ray.get(..., timeout=)``; an actor killed for good still fails the call at once."""

_F = TypeVar("_F")


def survives_restart(method: _F) -> _F:
    """Mark a platform actor's read-only (or idempotent) method: a call that meets the actor
    restarting is resubmitted to the new instance instead of failing with
    ``ActorUnavailableError`` ("the actor was restarted").

    The same as ``@ray.method(max_task_retries=RESTART_RETRIES)``, without importing Ray when a
    plane is imported (CLI, unit tests). Only for methods whose second run is harmless: a call
    that appends or closes something must stay at-most-once.

    Example:
        >>> class Meter:
        ...     @survives_restart
        ...     def stats(self) -> dict: ...
    """
    method.__ray_max_task_retries__ = RESTART_RETRIES  # type: ignore[attr-defined]
    return method


def node_info() -> dict[str, str]:
    """Liveness plus where the calling actor runs: its node id and that node's pool label."""
    import ray

    ctx = ray.get_runtime_context()
    labels = ctx.get_node_labels()
    return {"status": "ok", "node_id": ctx.get_node_id(), "pool": str(labels.get("pool", ""))}


def platform_actor(cfg: PlatformConfig, cls: type, name: str, *args: Any,
                   **options: Any) -> ActorHandle:
    """Get the named platform actor, creating it if it does not exist.

    Detached (outlives the driver), restarted by Ray on failure (``max_restarts=-1``), 0 CPU and
    placed on the platform pool by label. State that must survive a restart belongs in a store.

    Raises:
        InfraError: this process is not connected to a Ray cluster.

    Example:
        >>> handle = platform_actor(cfg, DriftMonitorActor, "mlplat-drift-monitor", 10_000)
    """
    import ray  # here so that importing a plane stays cheap (CLI, unit tests)

    if not ray.is_initialized():
        raise InfraError(
            f"Not connected to Ray: call ray.init(address='auto', namespace='{PLATFORM_NAMESPACE}') "
            f"(or run inside a Ray job) before asking for '{name}'; start a cluster with "
            "`mlplat cluster up`."
        )
    cfg.pool(PLATFORM_POOL)
    handle: Any = ray.remote(cls).options(  # type: ignore[attr-defined]
        name=name,
        namespace=PLATFORM_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        num_cpus=0,
        label_selector=pool_selector(PLATFORM_POOL),
        **options,
    ).remote(*args)
    return cast("ActorHandle", handle)
