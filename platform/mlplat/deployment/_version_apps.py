"""Model versions as Serve applications of their own, started and pruned by the router's owner.

Each version is one application ``<app>--v<version>`` without an HTTP route, so a router can
add or drop versions through its ``user_config`` alone: it looks the application up by name
when it reconfigures. The tabular router (``_versions.py``) and the LLM router
(``mlplat.llm``) both run their separate versions this way; what a version application holds
is theirs (``build``).

Example:
    >>> ensure_version_apps("fraud", {"3"}, lambda v: version_application(v), deadline,
    ...                     pool="serving-ondemand")            # doctest: +SKIP
    ['3']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from mlplat.errors import InfraError


def version_app_name(app_name: str, version: str) -> str:
    """Serve application name of one version of an app.

    Example:
        >>> version_app_name("fraud", "3")
        'fraud--v3'
    """
    return f"{app_name}--v{version}"


def router_app_of(app_name: str) -> str | None:
    """The router's application a version application belongs to (None: not a version app).

    Example:
        >>> router_app_of("fraud--v3"), router_app_of("fraud")
        ('fraud', None)
    """
    base, sep, version = app_name.rpartition("--v")
    return base if sep and base and version.isdigit() else None


def ensure_version_apps(app_name: str, versions: Iterable[str], build: Callable[[str], Any],
                        deadline: float, *, pool: str) -> list[str]:
    """Deploy the version applications that are missing and wait until all serve.

    Args:
        app_name: The Serve application of the router.
        versions: Versions that must run as their own application.
        build: ``version -> bound Serve application`` for a version that is missing.
        deadline: ``time.monotonic()`` by which every version must be RUNNING.
        pool: The pool the versions run on (named in the timeout message).

    Returns:
        The versions that were newly deployed.

    Raises:
        InfraError: a version application failed or was not RUNNING by ``deadline``.
    """
    from ray import serve

    wanted = sorted(set(versions))
    existing = serve.status().applications
    started = []
    for version in wanted:
        name = version_app_name(app_name, version)
        if name in existing and str(existing[name].status) not in ("DELETING",):
            continue
        serve._run(build(version), name=name, route_prefix=None, _blocking=False)
        started.append(version)
    for version in wanted:
        name = version_app_name(app_name, version)
        while True:
            status = serve.status().applications.get(name)
            value = str(getattr(status.status, "value", status.status)) if status else "NONE"
            if value == "RUNNING":
                break
            if value == "DEPLOY_FAILED":
                raise InfraError(f"version {version} of '{app_name}' failed to deploy: "
                                 f"{status.message if status else ''}")
            if time.monotonic() > deadline:
                raise InfraError(f"version {version} of '{app_name}' was not RUNNING before the "
                                 f"deadline (status {value}); check free CPU/GPU on pool "
                                 f"'{pool}' (`ray status`).")
            time.sleep(0.1)
    return started


def prune_version_apps(app_name: str, keep: Iterable[str]) -> list[str]:
    """Delete version applications of ``app_name`` not in ``keep`` (non-blocking).

    Returns:
        The versions whose application is being deleted.
    """
    from ray import serve

    kept = set(keep)
    prefix = version_app_name(app_name, "")
    dropped = []
    for name in list(serve.status().applications):
        if name.startswith(prefix) and name[len(prefix):] not in kept:
            serve.delete(name, _blocking=False)
            dropped.append(name[len(prefix):])
    return dropped
