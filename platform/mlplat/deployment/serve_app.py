"""The app builder behind ``serve deploy apps/<app>/serve_config.yaml`` (Ray's own CLI).

``import_path: mlplat.deployment.serve_app:build`` with ``args`` names the app (and optionally
the platform.yaml, the promotion controller and the loader root); the split lives in the
router deployment's ``user_config`` in the same file, so editing weights and re-running
``serve deploy`` reconfigures the running replicas without restarting them.

Example:
    >>> app = build({"app": "fraud"})        # doctest: +SKIP
    >>> serve.run(app, name="fraud", route_prefix="/v1/models/fraud")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlplat.errors import UserError


class BuildArgs(BaseModel):
    """``args`` of the serve config application."""

    model_config = ConfigDict(extra="forbid")

    app: str = Field(description="App under apps/, e.g. fraud.")
    platform_yaml: str | None = Field(None, description="platform.yaml (default: the usual lookup).")
    controller: str | None = Field(
        None, description="Promotion-controller actor to hand the app to; None: manual only.")
    local_models: str | None = Field(
        None, description="Folder for LocalModelLoader (tests/laptops); default: the registry.")


def build(args: dict[str, Any]) -> Any:
    """Serve application builder: the app's router with its build pinned.

    Raises:
        UserError: unknown keys in ``args`` or an unknown app (names the key / the apps).
    """
    from mlplat.apps import load_app
    from mlplat.config import load_config
    from mlplat.deployment._api import _application, _build_id
    from mlplat.deployment._local import LocalModelLoader
    from mlplat.deployment._types import RouterUserConfig

    try:
        parsed = BuildArgs.model_validate(args)
    except ValidationError as exc:
        raise UserError(f"serve config args for mlplat.deployment.serve_app:build: {exc}") from exc
    cfg = load_config(parsed.platform_yaml)
    app = load_app(parsed.app, cfg)
    loader = LocalModelLoader(parsed.local_models) if parsed.local_models else None
    build_id = _build_id(cfg, app, loader, None, parsed.controller)
    # The config file's router user_config replaces this placeholder split.
    placeholder = RouterUserConfig.model_validate({"model": app.name,
                                                   "split": {"weights": {"1": 100}}})
    return _application(cfg, app, placeholder, loader, None, build_id, parsed.controller)
