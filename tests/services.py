"""Real services on loopback for tests: redis-server, PostgreSQL, mlflow server.

Each starter returns a `Service` that the caller stops; the session fixtures in
tests/conftest.py wrap them. Nothing here is a test double: these are the Debian/PyPI
binaries a user runs (`make install` installs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class Service:
    name: str
    port: int
    url: str
    proc: subprocess.Popen | None = None
    workdir: Path | None = None
    log: Path | None = None
    group: bool = False  # started with start_new_session: signal the whole process group

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:  # servers started in their own session take their workers down with them
            os.killpg(self.proc.pid, sig) if self.group else self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.proc is not None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found: run `make install` (installs the Debian packages)")
    return path


def start_redis(workdir: Path) -> Service:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    proc = subprocess.Popen(
        [_require("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc=proc)
    return Service("redis", port, f"redis://127.0.0.1:{port}", proc=proc, workdir=workdir, log=log)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL not found: run `make install` (installs the Debian package)")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(workdir: Path, databases: tuple[str, ...] = ("mlplat",)) -> Service:
    """A throwaway cluster (initdb ~2 s) listening on 127.0.0.1; trust auth, user `postgres`."""
    port = free_port()
    if os.geteuid() == 0:
        # pytest's tmp folders are root-only (0700); the postgres user needs its own.
        workdir = Path(tempfile.mkdtemp(prefix="mlplat-pg-"))
        shutil.chown(workdir, "postgres")
    data = workdir / "pgdata"
    subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    log = workdir / "postgres.log"
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    proc = subprocess.Popen(
        _as_postgres([_pg_bin("postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                      "-k", str(workdir), "-c", "fsync=off"]),
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc=proc)
    deadline = time.monotonic() + 30
    while True:  # the port opens before the server accepts queries
        ready = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                               capture_output=True)
        if ready.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL not ready; see {log}")
        time.sleep(0.1)
    for db in databases:
        create_database(port, db)
    url = f"postgresql://postgres@127.0.0.1:{port}"
    return Service("postgres", port, url, proc=proc, workdir=workdir, log=log)


def create_database(port: int, name: str) -> str:
    """Creates database `name` on the server at `port`; returns its URL."""
    subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name],
                   check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def start_mlflow_server(workdir: Path, backend_uri: str, port: int | None = None) -> Service:
    """`mlflow server` on loopback with a local artifact root. Pass `port` to restart on the same one."""
    port = port or free_port()
    if backend_uri.startswith("postgresql://"):  # MLflow defaults to psycopg 3; we ship psycopg2
        backend_uri = "postgresql+psycopg2://" + backend_uri[len("postgresql://"):]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"mlflow-{port}.log"
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_uri,
         "--artifacts-destination", str(workdir / "artifacts"),
         "--workers", "1"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_for_port(port, timeout_s=120, proc=proc)
    return Service("mlflow", port, f"http://127.0.0.1:{port}", proc=proc, workdir=workdir, log=log,
                   group=True)


def poll(fn, ok, timeout_s: float, what: str, interval_s: float = 0.3):  # type: ignore[no-untyped-def]
    """Call ``fn`` until ``ok(result)`` or the deadline; errors count as "not yet".

    Returns the first accepted result; raises AssertionError naming ``what`` and the last result.
    """
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if ok(last):
                return last
        except Exception as exc:
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached in {timeout_s}s; last: {last!r}")
