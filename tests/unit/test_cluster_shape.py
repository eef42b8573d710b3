from __future__ import annotations

import pytest

from mlplat.cluster import node_specs, pool_resource
from mlplat.errors import UserError


def test_node_specs_follow_platform_yaml(platform_config) -> None:
    specs = node_specs(platform_config)
    assert specs[0].is_head and specs[0].pool == platform_config.local_cluster.head_pool
    assert sum(s.is_head for s in specs) == 1
    for name, pool in platform_config.pools.items():
        mine = [s for s in specs if s.pool == name]
        assert len(mine) == pool.local.nodes
        for spec in mine:
            assert spec.labels == {"pool": name}
            assert spec.resources == {pool_resource(name): pool.local.num_cpus}


def test_head_pool_without_nodes_is_a_user_error(platform_config) -> None:
    pools = dict(platform_config.pools)
    cpu = pools["cpu"]
    pools["cpu"] = cpu.model_copy(update={"local": cpu.local.model_copy(update={"nodes": 0})})
    cfg = platform_config.model_copy(update={"pools": pools})
    with pytest.raises(UserError, match="head_pool"):
        node_specs(cfg)


def test_survives_restart_is_what_ray_method_max_task_retries_sets() -> None:
    """The marker must be the attribute Ray's actor class reads; a Ray upgrade that renames it
    would silently turn restart-surviving reads back into ActorUnavailableErrors."""
    import ray

    from mlplat.cluster import survives_restart
    from mlplat.cluster._actors import RESTART_RETRIES

    def by_ray() -> None: ...

    def by_us() -> None: ...

    ray.method(max_task_retries=RESTART_RETRIES)(by_ray)
    survives_restart(by_us)
    ray_attrs = {k: v for k, v in vars(by_ray).items() if k.startswith("__ray")}
    assert ray_attrs == {k: v for k, v in vars(by_us).items() if k.startswith("__ray")}


def test_platform_actors_retry_reads_but_not_appends() -> None:
    """Reads survive a restart; a drift ``record`` or a window ``report`` (which closes it) must
    stay at-most-once, so a cut-off call is never applied twice."""
    from mlplat.governance._actor import CostMeterActor
    from mlplat.monitoring._actor import DriftMonitorActor

    def retried(cls: type, name: str) -> bool:
        return hasattr(getattr(cls, name), "__ray_max_task_retries__")

    assert all(retried(DriftMonitorActor, m) for m in ("ping", "stats", "latest_report", "kpi"))
    assert not any(retried(DriftMonitorActor, m) for m in ("record", "report", "record_outcomes"))
    assert retried(CostMeterActor, "ping") and not retried(CostMeterActor, "record_usage")
