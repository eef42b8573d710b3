"""Apps: one folder per model product under ``apps/`` (the tenant side).

An app is described either by ``app.py`` — a module whose ``app`` attribute is an
:class:`AppConfig`, the typed Python object `mlplat models new` scaffolds (defaults filled in,
checked by pydantic as the data scientist types) — or by a hand-written ``app.yaml`` (fraud, the
reference app). ``app.py`` wins when both exist. The YAML that Ray Serve and KubeRay need
(``serve_config.yaml``, ``contract.yaml``, ``cluster/``) is generated from it
(:mod:`mlplat.scaffold`), never edited.

Example:
    >>> from mlplat.config import load_config
    >>> from mlplat.apps import load_app
    >>> app = load_app("fraud", load_config())
    >>> app.team
    'risk'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from mlplat.config import PlatformConfig, PoolName, StrictModel
from mlplat.contracts.v1 import FeatureSpec
from mlplat.errors import NotFoundError, UserError, did_you_mean


class TrainingConfig(StrictModel):
    """How a version is trained; every field has a default a small tabular model can start from.

    Example:
        >>> TrainingConfig(epochs=20, learning_rate=1e-3).num_workers
        2
    """

    pool: PoolName = "training-spot"
    num_workers: int = Field(2, ge=1, description="DDP workers (one process each).")
    cpus_per_worker: float = Field(1.0, gt=0)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-2, gt=0)
    hidden_units: int = Field(32, ge=1)
    checkpoint_every_steps: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


class ServingConfig(StrictModel):
    pool: PoolName = "serving-ondemand"
    route_prefix: str = Field(pattern=r"^/")
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(0.5, gt=0)
    gate_metric: str = Field("val_auc",
                             description="Validation metric a version must reach to deploy.")
    gate_min: float = 0.7
    threshold: float = Field(0.5, ge=0, le=1, description="Score at or above which label = 1.")
    drift_sample_rate: float = Field(1.0, ge=0, le=1)
    placement: Literal["in_process", "deployments"] = Field(
        "in_process",
        description="Where versions run: inside the router replica (CPU models) or one Serve "
        "deployment per version behind handles (GPU / large models).",
    )
    version_num_cpus: float = Field(
        0.25, gt=0, description="CPUs of a version deployment (the shadow, or every version "
        "with placement: deployments).",
    )


class AppConfig(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    team: str
    owner: str
    description: str
    intended_use: str
    limitations: str
    features: FeatureSpec
    training: TrainingConfig
    serving: ServingConfig
    path: Path = Field(Path("."), exclude=True,
                       description="The app folder; set by load_app, never written by hand.")

    @property
    def feature_repo(self) -> Path:
        return self.path / "feature_repo"

    @property
    def manifest(self) -> Path:
        """The file that defines the app: ``app.py`` if there is one, else ``app.yaml``."""
        return app_manifest(self.path) or self.path / "app.yaml"


APP_FILES = ("app.py", "app.yaml")
"""What makes a folder under apps/ an app, in order of precedence."""


def app_manifest(folder: Path) -> Path | None:
    """``folder/app.py`` or ``folder/app.yaml`` (the first that exists), else None."""
    for name in APP_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def apps_dir(cfg: PlatformConfig) -> Path:
    return cfg.base_dir / "apps"


def list_apps(cfg: PlatformConfig) -> list[str]:
    root = apps_dir(cfg)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and app_manifest(p) is not None)


def load_app(name_or_path: str | Path, cfg: PlatformConfig) -> AppConfig:
    """Load ``apps/<name>/app.py`` or ``app.yaml`` (or the app folder at a path); check it against cfg.

    Raises:
        NotFoundError: no such app; the message lists the apps there are.
        UserError: the app file breaks the schema, does not import, or names an unknown team.
    """
    candidate = Path(name_or_path)
    folder = candidate if app_manifest(candidate) else apps_dir(cfg) / str(name_or_path)
    manifest = app_manifest(folder)
    if manifest is None:
        known = list_apps(cfg)
        raise NotFoundError(
            f"Unknown app '{name_or_path}'.{did_you_mean(candidate.name, known)} "
            f"Apps are folders with an app.py or app.yaml under {apps_dir(cfg)}: {known}. "
            "Create one with `mlplat models new NAME --team TEAM`."
        )
    if manifest.suffix == ".py":
        app = _load_app_py(manifest)
    else:
        try:
            raw = yaml.safe_load(manifest.read_text()) or {}
            app = AppConfig.model_validate({**raw, "path": folder.resolve()})
        except yaml.YAMLError as exc:
            raise UserError(f"{manifest}: not valid YAML: {exc}") from exc
        except ValidationError as exc:
            raise UserError(f"{manifest}: invalid app config: {_problems(exc)}") from exc
    cfg.team(app.team)  # unknown team → NotFoundError naming the teams
    return app


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _load_app_py(path: Path) -> AppConfig:
    """Import ``apps/<name>/app.py`` and return its ``app`` (an AppConfig) with ``path`` set."""
    try:
        module = _import_path(path, f"mlplat_app_{path.parent.name}_app")
    except ValidationError as exc:
        raise UserError(f"{path}: invalid app config: {_problems(exc)}") from exc
    except Exception as exc:  # the tenant's module failed to import: say where
        raise UserError(f"{path}: cannot import it: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, "app", None)
    if not isinstance(app, AppConfig):
        raise UserError(f"{path}: must define `app = AppConfig(...)` (from mlplat.apps); "
                        f"found {type(app).__name__}.")
    return app.model_copy(update={"path": path.parent.resolve()})


def _import_path(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file always yields a loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_app_module(app: AppConfig, module: str):
    """Import ``apps/<app>/<module>.py`` (tenant code such as a data generator) by path.

    Raises:
        NotFoundError: the app has no such module.
    """
    path = app.path / f"{module}.py"
    if not path.is_file():
        raise NotFoundError(f"App '{app.name}' has no {module}.py (looked for {path}).")
    return _import_path(path, f"mlplat_app_{app.name}_{module}")
