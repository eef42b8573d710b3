"""`mlplat models new / check / render`: the scaffold, its generated files and the pre-flight
check, in a scratch platform checkout (a copy of platform.yaml with its own apps/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlplat.apps import load_app
from mlplat.config import PlatformConfig, load_config
from mlplat.errors import NotFoundError, UserError
from mlplat.scaffold import check_app, new_app, render_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformConfig:
    shutil.copy(REPO / "platform.yaml", tmp_path / "platform.yaml")
    monkeypatch.setenv("MLPLAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLPLAT_CONFIG", str(tmp_path / "platform.yaml"))
    return load_config(tmp_path / "platform.yaml")


@pytest.fixture()
def churn(cfg: PlatformConfig) -> Path:
    return new_app(cfg, "churn", team="search")


def test_new_app_is_ready_as_generated(cfg: PlatformConfig, churn: Path) -> None:
    app = load_app("churn", cfg)
    assert app.team == "search" and app.manifest == churn / "app.py"
    assert app.training.epochs == 4 and app.training.keep_checkpoints == 2  # default kept
    assert check_app(cfg, "churn") == []
    serve = yaml.safe_load((churn / "serve_config.yaml").read_text())
    (application,) = serve["applications"]
    assert application["route_prefix"] == "/v1/models/churn"
    assert application["args"]["app"] == "churn"
    assert serve["http_options"]["port"] == cfg.local_cluster.serve_http_port
    contract = yaml.safe_load((churn / "contract.yaml").read_text())
    assert contract["input"]["looked_up_features"] == app.features.feature_refs()
    assert render_app(cfg, app) == []  # idempotent: nothing changed


@pytest.mark.parametrize("name,team,template,needle", [
    ("Churn", "search", "tabular-classifier", "lowercase"),
    ("churn", "growth", "tabular-classifier", "Unknown team 'growth'"),
    ("churn", "search", "tabular-regresor", "template 'tabular-regresor'"),
])
def test_bad_input_is_refused_and_writes_nothing(cfg: PlatformConfig, name: str, team: str,
                                                 template: str, needle: str) -> None:
    with pytest.raises((UserError, NotFoundError), match=needle):
        new_app(cfg, name, team=team, template=template)
    assert not any((cfg.base_dir / "apps").glob("*")) if (cfg.base_dir / "apps").exists() else True


def test_an_existing_app_is_never_overwritten(cfg: PlatformConfig, churn: Path) -> None:
    (churn / "model.py").write_text("# my work\n")
    with pytest.raises(UserError, match="already exists"):
        new_app(cfg, "churn", team="search")
    assert (churn / "model.py").read_text() == "# my work\n"


def test_check_reports_one_line_per_problem_with_file_field_and_fix(cfg: PlatformConfig,
                                                                  churn: Path) -> None:
    app_py = churn / "app.py"
    # A hand edit of a generated file, a feature without a Feast type, a model that returns
    # the wrong shape.
    (churn / "serve_config.yaml").write_text((churn / "serve_config.yaml").read_text() + "# x\n")
    app_py.write_text(app_py.read_text().replace('"days_since_last_login"]',
                                                 '"days_since_last_login", "nps_score"]'))
    (churn / "model.py").write_text((churn / "model.py").read_text()
                                    .replace(".squeeze(-1)", ""))
    problems = check_app(cfg, "churn")
    by_file = {(p.file, p.field): p for p in problems}
    assert ("apps/churn/serve_config.yaml", "(whole file)") in by_file
    assert "mlplat models render churn" in by_file[("apps/churn/serve_config.yaml",
                                                    "(whole file)")].fix
    assert ("apps/churn/feature_repo/features.py", "features") in by_file
    assert "nps_score" in by_file[("apps/churn/feature_repo/features.py", "features")].problem
    assert ("apps/churn/model.py", "build_model") in by_file
    assert "[3, 1]" in by_file[("apps/churn/model.py", "build_model")].problem
    # contract.yaml is stale too (it lists the features app.py had).
    assert ("apps/churn/contract.yaml", "input.looked_up_features") in by_file

    result = CliRunner().invoke(_cli(), ["models", "check", "churn"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == len(problems)
    assert all(" — fix: " in ln for ln in lines)


def test_quota_and_gate_metric_are_checked(cfg: PlatformConfig, churn: Path) -> None:
    app_py = churn / "app.py"
    text = app_py.read_text().replace("checkpoint_every_steps=20)",
                                      "checkpoint_every_steps=20, num_workers=500)")
    app_py.write_text(text.replace('gate_metric="val_auc"', 'gate_metric="val_f1"'))
    problems = {(p.field, p.problem.split(" ")[0]) for p in check_app(cfg, "churn")}
    assert ("training", "needs") in problems
    assert ("serving.gate_metric", "'val_f1'") in problems


def test_a_broken_app_py_names_the_field(cfg: PlatformConfig, churn: Path) -> None:
    app_py = churn / "app.py"
    app_py.write_text(app_py.read_text().replace("epochs=4", "epochs=0"))
    with pytest.raises(UserError, match=r"app.py: invalid app config: .*epochs"):
        load_app("churn", cfg)
    (problem,) = check_app(cfg, "churn")
    assert "epochs" in problem.problem


def test_render_after_an_app_py_change_updates_the_generated_files(cfg: PlatformConfig,
                                                                   churn: Path) -> None:
    app_py = churn / "app.py"
    app_py.write_text(app_py.read_text().replace('route_prefix="/v1/models/churn"',
                                                 'route_prefix="/v1/churn-scores"'))
    assert [p.name for p in render_app(cfg, "churn")] == ["serve_config.yaml"]
    assert "/v1/churn-scores" in (churn / "serve_config.yaml").read_text()
    assert check_app(cfg, "churn") == []


def test_fraud_is_hand_written_yaml_and_has_nothing_to_render(platform_config) -> None:
    with pytest.raises(UserError, match="hand-written"):
        render_app(platform_config, "fraud")
    assert check_app(platform_config, "fraud") == []


def _cli():
    from mlplat.cli import app

    return app
