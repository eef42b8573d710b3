"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Service, start_postgres, start_redis

REPO = Path(__file__).resolve().parents[1]
S3_BUCKET = "mlplat-it"


def _guard_ast_parse() -> None:
    """Retry ``ast.parse`` on CPython 3.11.7's racy AST counter, for the whole test process.

    Python 3.11 formats tracebacks with ``ast.parse`` (caret anchors), so any background thread
    that logs an exception (Ray, Serve, our samplers) can race a parse in another thread —
    here pytest's own assertion rewriting of a lazily imported plugin package (anyio, under
    Evidently) failed with ``SystemError: AST constructor recursion depth mismatch`` in CI.
    ``mlplat._pyast.parse_source`` (the retrying parse) explains the bug (gh-106905).
    """
    import ast

    from mlplat._pyast import parse_source

    ast.parse = parse_source  # type: ignore[assignment]


_guard_ast_parse()


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


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port with bucket ``S3_BUCKET``; yields the AWS
    environment (endpoint override included) that reaches it, also set in this process."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "mlplat-test",
        "AWS_SECRET_ACCESS_KEY": "mlplat-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        fs = pafs.S3FileSystem(
            access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=env["AWS_ENDPOINT_URL"], region="us-east-1",
            allow_bucket_creation=True,
        )
        fs.create_dir(S3_BUCKET)
        try:
            yield env
        finally:
            server.stop()



# The one shared Ray cluster. Defined here, once: a fixture imported into two sub-conftests
# would be two session fixtures, and the second would call ray.init again.
from tests.ray_fixtures import ray_cluster, ray_dashboard_url  # noqa: E402, F401
