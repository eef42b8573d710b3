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
