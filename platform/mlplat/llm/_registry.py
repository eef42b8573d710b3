"""Where an LLM version's files live: a local folder, or an MLflow registry version.

A registered LLM version is the model folder (config, safetensors, tokenizer) logged as run
artifacts under ``model/`` and registered under the app's model name, tagged
``mlplat.kind=llm``. Loading downloads it once into the storage root's cache.

Example:
    >>> version = register_model(cfg, app, folder)          # doctest: +SKIP
    >>> model_folder(cfg, app, version)                      # doctest: +SKIP
    PosixPath('.../.mlplat/llm/cache/tiny-chat/2-3f2a…')
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.errors import InfraError, NotFoundError
from mlplat.llm._config import LocalSource, resolve_local_source

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig

ARTIFACT_DIR = "model"
KIND_TAG = "mlplat.kind"


def model_folder(cfg: PlatformConfig, app: LLMAppConfig, version: str) -> Path:
    """A local folder holding ``version`` of the app's model (downloaded if registered)."""
    if isinstance(app.model.source, LocalSource):
        return resolve_local_source(cfg, app, version)
    return materialize_model(cfg, app.model.name, version)


def _client(cfg: PlatformConfig) -> Any:
    from mlflow.tracking import MlflowClient

    from mlplat.experiment import tracking_uri

    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_model(cfg: PlatformConfig, app: LLMAppConfig, folder: Path,
                   *, description: str = "") -> str:
    """Log ``folder`` as a run's artifacts and register it as a new version of the app's model.

    Returns:
        The new version number (``"1"``, ``"2"``, …).

    Raises:
        InfraError: MLflow is unreachable.

    Example:
        >>> register_model(cfg, app, Path(".mlplat/llm/models/tiny-chat/1"))   # doctest: +SKIP
        '1'
    """
    from mlflow.exceptions import MlflowException

    from mlplat.experiment import ensure_experiment

    try:
        client = _client(cfg)
        exp = ensure_experiment(cfg, f"llm-{app.name}", {"mlplat.team": app.team})
        run = client.create_run(exp, tags={KIND_TAG: "llm", "mlplat.app": app.name})
        client.log_artifacts(run.info.run_id, str(folder), ARTIFACT_DIR)
        client.set_terminated(run.info.run_id)
        try:
            client.get_registered_model(app.model.name)
        except MlflowException:
            client.create_registered_model(app.model.name, tags={KIND_TAG: "llm"})
        mv = client.create_model_version(
            app.model.name, f"{run.info.artifact_uri}/{ARTIFACT_DIR}", run.info.run_id,
            tags={KIND_TAG: "llm"}, description=description or app.description,
        )
    except MlflowException as exc:
        raise InfraError(f"Registering {app.model.name} in MLflow failed: {exc}") from exc
    return str(mv.version)


def materialize_model(cfg: PlatformConfig, model: str, version: str) -> Path:
    """Download a registered version into the local cache (once, atomically); return its folder.

    Raises:
        NotFoundError: no such model or version (the message lists the versions).
        InfraError: MLflow or its artifact store failed.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from mlplat.experiment import tracking_uri

    client = _client(cfg)
    try:
        mv = client.get_model_version(model, version)
    except MlflowException as exc:
        try:
            known = sorted((str(v.version) for v in
                            client.search_model_versions(f"name='{model}'")), key=int)
        except MlflowException:
            known = []
        raise NotFoundError(
            f"model.version: LLM '{model}' has no registered version '{version}'. "
            f"Versions: {known}. Register one with jobs/build_tiny_llm.py --register."
        ) from exc
    target = cfg.local_path(f"llm/cache/{model}/{version}-{(mv.run_id or 'norun')[:12]}")
    if (target / "config.json").is_file():
        return target
    staging = target.parent / f".{version}-{uuid.uuid4().hex[:8]}"
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(staging), tracking_uri=tracking_uri(cfg)
        )
        try:
            os.replace(local, target)  # atomic: concurrent replicas never see half a folder
        except OSError:
            if not (target / "config.json").is_file():
                raise
    except Exception as exc:
        raise InfraError(f"Could not download {model} v{version} from {mv.source}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
