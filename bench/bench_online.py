"""Online feature fetch, one entity: our serving path vs Feast's SDK vs raw store reads (floor).

The fraud app's two views (9 features: 3 profile + 6 activity) are applied and materialized
into SQLite and into a real redis-server started here on a free loopback port. For each store,
serial single-entity fetches of random accounts are timed through

* ``ServingFeatureClient.get`` — what the fraud Serve app calls (online read + TTL + sampled
  log hand-off at platform.yaml's ``data.feature_log_sample_rate``);
* ``FeatureStore.get_online_features(...).to_dict()`` — Feast's SDK;
* the floor: the raw reads of the same keys (redis-py ``HGETALL`` of the entity's hash;
  sqlite3 ``SELECT`` from both view tables), no decoding.

Ratios are to Feast's SDK call in the same run. Design SLO: p99 < slos.data.online_feature_p99_ms;
goal: p99 ≤ 1.5× Feast's.

Example:
    $ python bench/bench_online.py --n 2000
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found: run `make install` (Debian package).")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def _percentiles(fn: Callable[[int], object], accounts: list[int], n: int) -> tuple[float, float]:
    rng = random.Random(0)
    for a in accounts[:50]:  # warm-up: connections, caches
        fn(a)
    times = []
    for _ in range(n):
        a = rng.choice(accounts)
        t0 = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t0) * 1e3)
    p50, p99 = np.percentile(times, [50, 99])
    return float(p50), float(p99)


def bench_store(kind: str, n: int, home: Path, redis_port: int | None) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from mlplat.apps import load_app
    from mlplat.config import RedisOnlineStore, load_config
    from mlplat.data import ServingFeatureClient, apply_features, feature_store, materialize

    cfg = load_config(REPO / "platform.yaml")
    if redis_port is not None:
        name = cfg.active_profile_name()
        profile = cfg.profiles[name].model_copy(update={"online_store": RedisOnlineStore(
            type="redis", connection_string=f"127.0.0.1:{redis_port}")})
        cfg = cfg.model_copy(update={"profiles": {**cfg.profiles, name: profile}})
    app = load_app("fraud", cfg)
    apply_features(cfg, app)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=5)
    materialize(cfg, app, end=end)
    accounts = sorted(range(100_000, 100_400))
    store = feature_store(cfg, app)
    refs = [f"{v.name}:{f}" for v in app.features.feature_views for f in v.features]
    n_features = len(refs)
    ours = ServingFeatureClient(cfg, app, log_dir=str(home / "feature_log"))

    def feast_sdk(a: int) -> object:
        return store.get_online_features(features=refs, entity_rows=[{"account_id": a}]).to_dict()

    def serving(a: int) -> object:
        return ours.get([{"account_id": a}])

    def key(a: int) -> EntityKey:
        return EntityKey(join_keys=["account_id"], entity_values=[Value(int64_val=a)])

    if redis_port is not None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=redis_port)

        def floor(a: int) -> object:
            return client.hgetall(_redis_key("fraud", key(a), entity_key_serialization_version=3))

        floor_name = "redis-py HGETALL (floor)"
    else:
        con = sqlite3.connect(store.config.online_store.path, check_same_thread=False)
        tables = [f"fraud_{v.name}" for v in app.features.feature_views]

        def floor(a: int) -> object:
            k = serialize_entity_key(key(a), entity_key_serialization_version=3)
            return [con.execute(f'SELECT feature_name, value, event_ts FROM "{t}" '
                                "WHERE entity_key = ?", (k,)).fetchall() for t in tables]

        floor_name = "sqlite3 SELECT ×2 (floor)"
    assert serving(accounts[0])[0]["credit_limit"] is not None  # really reading data
    results = {
        "Feast get_online_features": _percentiles(feast_sdk, accounts, n),
        "mlplat serving path": _percentiles(serving, accounts, n),
        floor_name: _percentiles(floor, accounts, n),
    }
    base = results["Feast get_online_features"][1]
    slo = cfg.slos.data.online_feature_p99_ms
    print(f"{kind}: 1 entity × {n_features} features (2 views), {n} serial fetches; "
          f"ratios are p99 / Feast SDK p99; SLO p99 < {slo:g} ms")
    for name, (p50, p99) in results.items():
        print(f"   {name:<28} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   {p99 / base:5.2f}×")
    print(f"   logged {ours.log.rows_offered} of the served vectors "
          f"(sample rate {ours.log.sample_rate:g}), dropped {ours.log.rows_dropped}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed fetches per path")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("fraud_datagen", REPO / "apps/fraud/datagen.py")
    assert spec and spec.loader
    datagen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(datagen)
    old_home = os.environ.get("MLPLAT_HOME")
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        for kind in ("sqlite", "redis"):
            home = Path(tmp) / kind
            os.environ["MLPLAT_HOME"] = str(home)
            datagen.generate(home / "raw" / "fraud", n_accounts=400, days=3)
            proc = None
            try:
                port = None
                if kind == "redis":
                    proc, port = _start_redis(home)
                bench_store(kind, args.n, home, port)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    if old_home is None:
        os.environ.pop("MLPLAT_HOME", None)
    else:
        os.environ["MLPLAT_HOME"] = old_home


if __name__ == "__main__":
    main()
