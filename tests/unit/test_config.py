"""platform.yaml is the single source of truth: it loads, and bad files fail with a usable message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplat.config import load_config
from mlplat.errors import NotFoundError, UserError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((REPO / "platform.yaml").read_text())
    mutate(raw)
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repo_config_has_the_required_teams_pools_and_profiles() -> None:
    cfg = load_config(REPO / "platform.yaml")
    assert {"risk", "recommendations", "search"} <= set(cfg.teams)
    assert cfg.pools["training-spot"].instance_type == "p4d.24xlarge"
    assert cfg.pools["training-spot"].capacity == "spot"
    assert cfg.pools["serving-ondemand"].instance_type == "g5.2xlarge"
    assert cfg.pools["cpu"].instance_type == "m6i.4xlarge"
    assert {"local", "prod"} <= set(cfg.profiles)
    assert cfg.profiles["prod"].online_store.type == "redis"
    assert cfg.profiles["prod"].tracking.type == "mlflow_server"
    for team in cfg.teams.values():
        assert set(team.quotas) == {"training-spot", "serving-ondemand", "cpu"}


def test_load_order_path_then_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _write(tmp_path, lambda raw: raw["teams"]["risk"].update(cost_center="CC-X"))
    monkeypatch.setenv("MLPLAT_CONFIG", str(other))
    assert load_config().teams["risk"].cost_center == "CC-X"
    assert load_config(REPO / "platform.yaml").teams["risk"].cost_center != "CC-X"
    monkeypatch.delenv("MLPLAT_CONFIG")
    monkeypatch.chdir(REPO)
    assert load_config().source_path == (REPO / "platform.yaml").resolve()


def test_unknown_key_is_rejected_with_file_and_key_path(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["pools"]["cpu"].update(price_per_hour=1.0))
    with pytest.raises(UserError, match=r"platform\.yaml.*pools\.cpu\.price_per_hour.*[Ee]xtra"):
        load_config(path)


def test_bad_value_names_key_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["pools"]["cpu"].update(price_usd_per_hour=-3))
    with pytest.raises(UserError, match=r"pools\.cpu\.price_usd_per_hour.*greater than 0.*-3"):
        load_config(path)


def test_missing_pool_and_bad_canary_steps(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["pools"].pop("serving-ondemand"))
    with pytest.raises(UserError, match="serving-ondemand"):
        load_config(path)
    path = _write(tmp_path, lambda raw: raw["promotion"].update(canary_steps_pct=[50, 5]))
    with pytest.raises(UserError, match=r"promotion\.canary_steps_pct.*end at 100"):
        load_config(path)


def test_missing_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teams: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_unknown_team_suggests_nearest(platform_config) -> None:
    with pytest.raises(NotFoundError, match="Did you mean 'risk'"):
        platform_config.team("risc")


def test_profile_override_and_root(platform_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert platform_config.active_profile_name() == "local"
    monkeypatch.setenv("MLPLAT_PROFILE", "prod")
    monkeypatch.delenv("MLPLAT_HOME")
    assert platform_config.root() == "s3://mlplat-prod-artifacts"
    monkeypatch.setenv("MLPLAT_PROFILE", "staging")
    with pytest.raises(UserError, match="MLPLAT_PROFILE='staging'"):
        platform_config.active_profile()


def test_price_per_cpu_second_derives_from_pool_price(platform_config) -> None:
    pool = platform_config.pools["serving-ondemand"]
    assert pool.price_usd_per_cpu_second * pool.cpus_per_node * 3600 == pytest.approx(
        pool.price_usd_per_hour
    )


def test_checkpoint_root_defaults_under_root_and_can_be_a_bucket(
    platform_config, tmp_path: Path
) -> None:
    assert platform_config.checkpoint_root() == f"{platform_config.root()}/checkpoints"

    def in_bucket(raw: dict) -> None:
        raw["profiles"]["local"]["checkpoints"] = "s3://spot-ckpt/fraud/"

    assert load_config(_write(tmp_path, in_bucket)).checkpoint_root() == "s3://spot-ckpt/fraud"

    def relative(raw: dict) -> None:
        raw["profiles"]["local"]["checkpoints"] = "ckpt"

    cfg = load_config(_write(tmp_path, relative))
    assert cfg.checkpoint_root() == str((cfg.base_dir / "ckpt").resolve())
