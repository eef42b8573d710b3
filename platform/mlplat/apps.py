"""Apps: one folder per model product under ``apps/`` (the tenant side), described by app.yaml.

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
    pool: PoolName = "training-spot"
    num_workers: int = Field(ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    hidden_units: int = Field(ge=1)
    checkpoint_every_steps: int = Field(ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


class ServingConfig(StrictModel):
    pool: PoolName = "serving-ondemand"
    route_prefix: str = Field(pattern=r"^/")
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(gt=0)
    gate_metric: str = Field(description="Validation metric a version must reach to deploy.")
    gate_min: float
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
    path: Path = Field(exclude=True)

    @property
    def feature_repo(self) -> Path:
        return self.path / "feature_repo"


def apps_dir(cfg: PlatformConfig) -> Path:
    return cfg.base_dir / "apps"


def list_apps(cfg: PlatformConfig) -> list[str]:
    root = apps_dir(cfg)
    return sorted(p.parent.name for p in root.glob("*/app.yaml")) if root.is_dir() else []


def load_app(name_or_path: str | Path, cfg: PlatformConfig) -> AppConfig:
    """Load ``apps/<name>/app.yaml`` (or the app folder at a path) and check it against cfg.

    Raises:
        NotFoundError: no such app; the message lists the apps there are.
        UserError: app.yaml breaks the schema or names an unknown team.
    """
    candidate = Path(name_or_path)
    folder = candidate if (candidate / "app.yaml").is_file() else apps_dir(cfg) / str(name_or_path)
    manifest = folder / "app.yaml"
    if not manifest.is_file():
        known = list_apps(cfg)
        raise NotFoundError(
            f"Unknown app '{name_or_path}'.{did_you_mean(candidate.name, known)} "
            f"Apps are folders with an app.yaml under {apps_dir(cfg)}: {known}."
        )
    try:
        raw = yaml.safe_load(manifest.read_text()) or {}
        app = AppConfig.model_validate({**raw, "path": folder.resolve()})
    except yaml.YAMLError as exc:
        raise UserError(f"{manifest}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"{manifest}: invalid app config: {problems}") from exc
    cfg.team(app.team)  # unknown team → NotFoundError naming the teams
    return app


def load_app_module(app: AppConfig, module: str):
    """Import ``apps/<app>/<module>.py`` (tenant code such as a data generator) by path.

    Raises:
        NotFoundError: the app has no such module.
    """
    import importlib.util

    path = app.path / f"{module}.py"
    if not path.is_file():
        raise NotFoundError(f"App '{app.name}' has no {module}.py (looked for {path}).")
    spec = importlib.util.spec_from_file_location(f"mlplat_app_{app.name}_{module}", path)
    assert spec is not None and spec.loader is not None  # a .py file always yields a loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
