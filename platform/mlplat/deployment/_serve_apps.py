"""The Serve calls every kind's control surface makes: start Serve, call a running app's
router, read back its ``user_config``, wait until an app runs. One copy, for tabular and LLM
apps alike (``deployment._api`` and ``llm._api``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlplat.errors import InfraError, NotFoundError

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig

_POLL_S = 0.1  # status polling granularity, well below any deadline it is polled against


def start_serve(cfg: PlatformConfig) -> None:
    """Start Serve on the cluster if it is not running (a no-op, warning on mismatch, if it is)."""
    from ray import serve

    # One proxy on the head: the emulated nodes share one IP, so per-node proxies would
    # all want the same port.
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": cfg.local_cluster.serve_http_port},
    )


def call_app(app_name: str, method: str, timeout_s: float, *args: Any) -> Any:
    """``method(*args)`` on the running app's router deployment.

    Raises:
        NotFoundError: no Serve application of that name (404, says how to release it).
    """
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        handle = serve.get_app_handle(app_name)
    except RayServeException as exc:
        raise NotFoundError(
            f"app '{app_name}' is not deployed on this Ray cluster ({exc}). Release it first: "
            f"`mlplat deploy promote {app_name} <version> --reason ...`."
        ) from exc
    return getattr(handle, method).remote(*args).result(timeout_s=timeout_s)


def read_user_config(app_name: str) -> Callable[[float], dict[str, Any] | None]:
    """A reader of the ``user_config`` a router replica runs (``wait_for_user_config``)."""
    return lambda timeout_s: call_app(app_name, "user_config_state", timeout_s)


def wait_app_running(app_name: str, deadline: float, what: str, hint: str) -> None:
    """Until Serve reports the application RUNNING.

    Raises:
        InfraError: it failed to deploy (Serve's message), or was not RUNNING by ``deadline``
            (``hint`` says what to check).
    """
    from ray import serve

    last = "NOT_STARTED"
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app_name)
        if status is not None:
            last = str(getattr(status.status, "value", status.status))
            if last == "RUNNING":
                return
            if last == "DEPLOY_FAILED":
                raise InfraError(
                    f"{what} of app '{app_name}' failed: {status.message} "
                    "See the replica logs in the Ray dashboard (Serve tab)."
                )
        time.sleep(_POLL_S)
    raise InfraError(
        f"{what} of app '{app_name}' did not reach RUNNING before its deadline (last status "
        f"{last}). {hint}"
    )
