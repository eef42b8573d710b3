"""Model versions as their own Serve applications, called by the router through handles.

Used for the shadow version (always: a shadow must never share the router's CPU) and, with
``serving.placement: deployments``, for every version (GPU / large models with their own
resources). Each version is one application ``<app>--v<version>`` without an HTTP route, so
the router can add or drop versions through its ``user_config`` alone: the router looks the
application up by name when it reconfigures.
"""

import asyncio
import random
from typing import Any

from ray import serve

from mlplat.apps import AppConfig
from mlplat.cluster import pool_selector
from mlplat.config import PlatformConfig
from mlplat.deployment._types import ExperimentPlaneLoader, ModelLoader
from mlplat.deployment._version_apps import (
    ensure_version_apps,
    prune_version_apps,
    version_app_name,
)
from mlplat.errors import InfraError

VERSION_DEPLOYMENT = "model"


@serve.deployment(name=VERSION_DEPLOYMENT, logging_config={"enable_access_log": False})
class VersionDeployment:
    """One loaded model version; ``predict(rows)`` answers scores. Loaded (and warmed) at start."""

    def __init__(self, cfg: PlatformConfig, loader: ModelLoader | None, model: str,
                 version: str) -> None:
        self._model = (loader or ExperimentPlaneLoader(cfg))(model, version)
        names = self._model.feature_spec.feature_names()
        self._model.predict_proba([{n: None for n in names}])  # warm before the first call

    async def predict(self, rows: list[dict[str, Any]], error_rate: float = 0.0,
                      delay_s: float = 0.0) -> list[float]:
        """Scores for ``rows``. ``error_rate``/``delay_s``: the router's fault knob (tests)."""
        if delay_s:
            await asyncio.sleep(delay_s)
        if error_rate >= 1.0 or (error_rate > 0 and random.random() < error_rate):
            raise InfraError("injected fault (user_config.faults)")
        return [float(s) for s in self._model.predict_proba(rows)]

    async def meta(self) -> dict[str, Any]:
        """What the router needs to validate requests for this version."""
        m = self._model
        return {"feature_spec": m.feature_spec, "card": m.card, "metrics": dict(m.metrics),
                "preprocessor": getattr(m, "preprocessor", None)}


class RemoteVersion:
    """A ``ServedModel`` whose scoring happens in the version's own deployment.

    Only ``apredict`` (awaited on the router's event loop) scores; ``predict_proba`` exists for
    the protocol and must not be called from an event loop.
    """

    def __init__(self, app_name: str, version: str, fault: tuple[float, float] = (0.0, 0.0)
                 ) -> None:
        self.version = version
        self._handle = serve.get_app_handle(version_app_name(app_name, version))
        meta = self._handle.meta.remote().result(timeout_s=60)
        self.feature_spec = meta["feature_spec"]
        self.card = meta["card"]
        self.metrics = meta["metrics"]
        self.preprocessor = meta["preprocessor"]
        self.fault = fault

    async def apredict(self, rows: list[dict[str, Any]], error_rate: float = 0.0,
                       delay_s: float = 0.0) -> list[float]:
        result: list[float] = await self._handle.predict.remote(rows, error_rate, delay_s)
        return result

    def predict_proba(self, rows: list[dict[str, Any]]) -> list[float]:
        result: list[float] = self._handle.predict.remote(rows).result(timeout_s=30)
        return result


class RemoteVersionLoader:
    """``ModelLoader`` returning ``RemoteVersion`` handles to ``<app>--v<version>``."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name

    def __call__(self, model: str, version: str) -> RemoteVersion:
        return RemoteVersion(self.app_name, version)


def version_application(cfg: PlatformConfig, app: AppConfig, loader: ModelLoader | None,
                        model: str, version: str) -> Any:
    """The bound Serve application for one version (resources from ``serving``)."""
    serving = app.serving
    return VersionDeployment.options(  # type: ignore[attr-defined]
        num_replicas=1,
        ray_actor_options={"num_cpus": serving.version_num_cpus,
                           "label_selector": pool_selector(serving.pool)},
    ).bind(cfg, loader, model, version)


def ensure_versions(cfg: PlatformConfig, app: AppConfig, loader: ModelLoader | None,
                    model: str, versions: set[str], deadline: float) -> list[str]:
    """Deploy the version applications of ``app`` that are missing and wait until all serve.

    Raises:
        InfraError: a version application failed or was not RUNNING by ``deadline``.
    """
    return ensure_version_apps(
        app.name, versions, lambda v: version_application(cfg, app, loader, model, v), deadline,
        pool=app.serving.pool)


def prune_versions(app: AppConfig, keep: set[str]) -> list[str]:
    """Delete version applications of ``app`` not in ``keep`` (non-blocking)."""
    return prune_version_apps(app.name, keep)
