"""Where tracking data lives: the MLflow tracking/registry URI and experiments' artifact roots.

One function maps the active profile's ``tracking`` backend to an MLflow URI; every other part
of mlplat goes through it, so the SQLite file and the server never diverge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlplat.config import MlflowServerTracking, PlatformConfig, SqliteTracking
from mlplat.errors import InfraError, UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACTS_DIR = "mlflow/artifacts"


def tracking_uri(cfg: PlatformConfig) -> str:
    """The MLflow tracking (and registry) URI of the active profile.

    Args:
        cfg: Platform config; ``active_profile().tracking`` picks the backend.

    Returns:
        ``sqlite:////abs/path/mlflow.db`` for the embedded store, the server URI otherwise.

    Example:
        >>> tracking_uri(load_config())
        'sqlite:////repo/.mlplat/mlflow/mlflow.db'
    """
    tracking = cfg.active_profile().tracking
    if isinstance(tracking, SqliteTracking):
        return "sqlite:///" + str(cfg.local_path(tracking.path).resolve())
    if isinstance(tracking, MlflowServerTracking):
        return tracking.uri
    raise UserError(f"Unsupported tracking backend {type(tracking).__name__}.")  # pragma: no cover


def artifact_root(cfg: PlatformConfig) -> str:
    """``<root>/mlflow/artifacts`` as a URI (``file://`` locally, the root's scheme otherwise).

    Example:
        >>> artifact_root(load_config())
        'file:///repo/.mlplat/mlflow/artifacts'
    """
    root = cfg.root()
    if "://" in root:
        return f"{root}/{ARTIFACTS_DIR}"
    return (Path(root) / ARTIFACTS_DIR).as_uri()


def client(cfg: PlatformConfig) -> MlflowClient:
    """An MLflow client bound to this config's store (no process-global MLflow state)."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(cfg: PlatformConfig, name: str, tags: dict[str, str] | None = None) -> str:
    """Id of experiment ``name``, created with artifacts under ``artifact_root(cfg)/<name>``.

    Safe to call from several processes at once: losing the creation race is not an error.

    Example:
        >>> ensure_experiment(load_config(), "fraud", {"team": "risk"})
        '1'
    """
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    try:
        existing = c.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        try:
            return str(
                c.create_experiment(
                    name, artifact_location=f"{artifact_root(cfg)}/{name}", tags=tags or {}
                )
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            again = c.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)
    except MlflowException as exc:
        raise InfraError(
            f"MLflow at {tracking_uri(cfg)} failed creating experiment '{name}': {exc}"
        ) from exc
