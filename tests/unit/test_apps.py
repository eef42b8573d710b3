from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplat.apps import list_apps, load_app
from mlplat.errors import NotFoundError, UserError


def test_fraud_app_loads_with_its_feature_spec(platform_config) -> None:
    app = load_app("fraud", platform_config)
    assert "fraud" in list_apps(platform_config)
    assert app.team == "risk"
    assert app.features.entity_keys == ["account_id"]
    assert "account_profile:credit_limit" in app.features.feature_refs()
    assert app.features.feature_names()[-2:] == ["amount", "merchant_category"]


def test_unknown_app_names_the_known_ones(platform_config) -> None:
    with pytest.raises(NotFoundError, match=r"Unknown app 'frud'.*Did you mean 'fraud'.*\['fraud'"):
        load_app("frud", platform_config)


def test_app_with_unknown_team_or_key_is_rejected(platform_config, tmp_path: Path) -> None:
    raw = yaml.safe_load((platform_config.base_dir / "apps/fraud/app.yaml").read_text())
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "app.yaml").write_text(yaml.safe_dump({**raw, "team": "riskk"}))
    with pytest.raises(NotFoundError, match="Unknown team 'riskk'"):
        load_app(folder, platform_config)
    raw["training"]["epochz"] = 3
    (folder / "app.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"training\.epochz"):
        load_app(folder, platform_config)
