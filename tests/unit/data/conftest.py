"""Fixtures of the data-plane unit tests: the fraud app, its synthetic data, no Ray."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
END = datetime(2025, 3, 1, tzinfo=UTC)


def load_datagen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fraud_datagen", REPO / "apps/fraud/datagen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def datagen() -> ModuleType:
    return load_datagen()


@pytest.fixture(scope="module")
def fraud_home(tmp_path_factory: pytest.TempPathFactory, datagen: ModuleType) -> Iterator[dict]:
    """A storage root holding a small fraud raw data set, with MLPLAT_HOME pointing at it."""
    from mlplat.apps import load_app
    from mlplat.config import load_config

    home = tmp_path_factory.mktemp("mlplat-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLPLAT_HOME", str(home))
        mp.delenv("MLPLAT_PROFILE", raising=False)
        cfg = load_config(REPO / "platform.yaml")
        app = load_app("fraud", cfg)
        paths = datagen.generate(home / "raw" / "fraud", n_accounts=30, days=3, end=END)
        yield {"home": home, "cfg": cfg, "app": app, "paths": paths}
