"""apps/fraud/serve_config.yaml is a valid Ray Serve config whose import path builds the router."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def test_serve_config_builds_the_router_with_a_valid_user_config(platform_config) -> None:
    from ray.serve._private.utils import import_attr
    from ray.serve.schema import ServeDeploySchema

    from mlplat.deployment import RouterUserConfig

    raw = yaml.safe_load((REPO / "apps/fraud/serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.name == "fraud" and app.route_prefix == "/v1/models/fraud"
    assert schema.http_options.port == platform_config.local_cluster.serve_http_port
    built = import_attr(app.import_path)(app.args)
    ingress = built._bound_deployment
    assert ingress.name == app.deployments[0].name == "router"
    config = RouterUserConfig.model_validate(app.deployments[0].user_config)
    assert config.model == "fraud" and config.split.weights == {"1": 100}
    assert ingress.version  # pinned: a user_config change never restarts


def test_builder_names_a_bad_arg() -> None:
    from mlplat.deployment.serve_app import build
    from mlplat.errors import UserError

    with pytest.raises(UserError, match="contoller"):
        build({"app": "fraud", "contoller": "x"})
