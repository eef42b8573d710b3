"""Feature availability for rollback and gates: defined in the registry and retained long enough."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlplat.contracts.v1 import FeatureViewRef
from mlplat.data import apply_features, check_feature_spec, feature_store
from mlplat.data._feast import load_definitions

from .conftest import END


@pytest.fixture(scope="module")
def applied(fraud_home: dict) -> dict:
    apply_features(fraud_home["cfg"], fraud_home["app"])
    return fraud_home


def _spec(app, *refs: FeatureViewRef):
    return app.features.model_copy(update={"feature_views": list(refs)})


def test_the_apps_own_spec_is_available(applied: dict) -> None:
    cfg, app = applied["cfg"], applied["app"]
    result = check_feature_spec(cfg, app, app.features, model="fraud", version="1", now=END)
    assert result.ok and result.missing == []
    assert "account_txn_stats.txn_count_7d" in result.checked
    assert result.retention_days == cfg.data.feature_retention_days
    assert result.model_dump()["ok"] is True


def test_undefined_view_and_feature_are_listed(applied: dict) -> None:
    cfg, app = applied["cfg"], applied["app"]
    spec = _spec(
        app,
        FeatureViewRef(name="account_txn_stats_v0", features=["txn_count_1h"], ttl_s=60),
        FeatureViewRef(name="account_profile", features=["credit_limit", "income"], ttl_s=60),
    )
    result = check_feature_spec(cfg, app, spec, now=END)
    assert not result.ok
    assert result.missing[0].startswith("account_txn_stats_v0: not defined in the Feast registry")
    assert result.missing[1].startswith("account_profile.income: not a feature of the registered")
    assert len(result.missing) == 2


def test_retention_shorter_than_the_platform_minimum_is_missing(applied: dict) -> None:
    cfg, app = applied["cfg"], applied["app"]
    store = feature_store(cfg, app)
    _, views = load_definitions(cfg, app)
    short = views["account_txn_stats"]
    short.tags = {"retention_days": "30"}
    untagged = views["account_profile"]
    untagged.tags = {}
    store.apply([short, untagged])
    try:
        result = check_feature_spec(cfg, app, app.features, now=END)
        assert not result.ok
        assert any(
            m.startswith("account_txn_stats: retained 30 days") and "requires 90" in m
            for m in result.missing
        ), result.missing
        # Without a tag the data must reach back: 3 days of data is not 90.
        assert any(
            m.startswith("account_profile: offline data starts") for m in result.missing
        ), result.missing
        # ... and it does when "now" is early enough that the data covers the window.
        oldest_profile_row = pd.read_parquet(applied["paths"]["account_profile"])[
            "event_timestamp"
        ].min().to_pydatetime()
        early = check_feature_spec(
            cfg, app, _spec(app, app.features.feature_views[0]),
            now=oldest_profile_row + timedelta(days=cfg.data.feature_retention_days),
        )
        assert early.ok, early.missing
    finally:
        apply_features(cfg, app)


def test_cli_check_exits_nonzero_listing_whats_missing(
    applied: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlplat.cli import app as cli
    from mlplat.contracts.v1 import ModelCard

    app = applied["app"]
    spec = _spec(
        app, FeatureViewRef(name="account_profile", features=["credit_limit", "income"], ttl_s=60)
    )

    def card(cfg, model, version):  # the registry's verified card, as get_model_card returns it
        return ModelCard.model_construct(model=model, version=version, feature_spec=spec)

    monkeypatch.setattr("mlplat.experiment.get_model_card", card)
    runner = CliRunner()
    bad = runner.invoke(cli, ["features", "check", "fraud:7"])
    assert bad.exit_code == 1
    assert "missing: account_profile.income: not a feature" in bad.output
    monkeypatch.setattr(
        "mlplat.experiment.get_model_card",
        lambda cfg, m, v: ModelCard.model_construct(feature_spec=app.features),
    )
    good = runner.invoke(cli, ["features", "check", "fraud:7", "--json"])
    assert good.exit_code == 0, good.output
    assert '"ok": true' in good.output
    usage = runner.invoke(cli, ["features", "check", "fraud"])
    assert usage.exit_code != 0


def test_a_model_not_named_like_an_app_finds_the_app_by_its_views(
    applied: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlplat.contracts.v1 import ModelCard
    from mlplat.data import check_features

    app = applied["app"]
    monkeypatch.setattr(
        "mlplat.experiment.get_model_card",
        lambda cfg, m, v: ModelCard.model_construct(feature_spec=app.features),
    )
    result = check_features(applied["cfg"], "fraud-it-1234", "2", now=END)
    assert result.app == "fraud" and result.ok and result.model == "fraud-it-1234"
