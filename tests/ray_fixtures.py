"""The one session-scoped multi-pool Ray cluster shared by integration and e2e tests.

By default each pytest session builds an in-process ``ray.cluster_utils.Cluster`` with the
node pools from platform.yaml (see mlplat.cluster). Set MLPLAT_TEST_RAY_ADDRESS to the GCS
address of a running cluster (e.g. one from `mlplat cluster up`) to reuse it instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster(session_home: Path, repo_root: Path) -> Iterator[str]:
    """Yields the GCS address of the shared cluster, with this process connected to it."""
    import ray

    from mlplat.config import load_config

    cfg = load_config(repo_root / "platform.yaml")
    address = os.environ.get("MLPLAT_TEST_RAY_ADDRESS")
    cluster = None
    if not address:
        from mlplat.cluster import start_test_cluster

        cluster = start_test_cluster(cfg)
        address = cluster.address
    ray.init(
        address=address,
        namespace="mlplat",
        runtime_env={"env_vars": {"MLPLAT_HOME": str(session_home)}},
        logging_level="ERROR",
    )
    try:
        yield address
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 - best effort: Serve may never have started
            pass
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
            from mlplat.cluster._local import _forget_address

            _forget_address(address)
