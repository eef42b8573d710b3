"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Service, start_postgres, start_redis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def platform_config_path() -> Path:
    return REPO / "platform.yaml"


@pytest.fixture()
def platform_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The repo's platform.yaml with its local storage root moved into tmp_path."""
    from mlplat.config import load_config

    monkeypatch.setenv("MLPLAT_HOME", str(tmp_path / "mlplat-home"))
    monkeypatch.delenv("MLPLAT_PROFILE", raising=False)
    return load_config(REPO / "platform.yaml")


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A storage root shared by every test in the session that uses the Ray cluster."""
    home = tmp_path_factory.mktemp("mlplat-home")
    old = os.environ.get("MLPLAT_HOME")
    os.environ["MLPLAT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MLPLAT_HOME", None)
    else:
        os.environ["MLPLAT_HOME"] = old


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real redis-server on a free loopback port."""
    svc = start_redis(tmp_path_factory.mktemp("redis"))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real PostgreSQL on a free loopback port; `url` is postgresql://postgres@127.0.0.1:PORT
    (append `/mlplat`, or create your own database)."""
    svc = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield svc
    svc.stop()


# The one shared Ray cluster. Defined here, once: a fixture imported into two sub-conftests
# would be two session fixtures, and the second would call ray.init again.
from tests.ray_fixtures import ray_cluster, ray_dashboard_url  # noqa: E402, F401
