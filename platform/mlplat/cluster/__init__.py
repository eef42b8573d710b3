"""The local multi-pool Ray cluster: one machine emulating the production node pools.

``mlplat cluster up`` starts a real cluster with ``ray start`` (head + one Ray node per emulated
pool node), each node carrying its pool as a node label and a ``pool:<name>`` custom resource.
Tests build the same shape in-process with ``ray.cluster_utils.Cluster``.
"""

from mlplat.cluster._actors import PLATFORM_NAMESPACE as PLATFORM_NAMESPACE
from mlplat.cluster._actors import PLATFORM_POOL as PLATFORM_POOL
from mlplat.cluster._actors import node_info as node_info
from mlplat.cluster._actors import platform_actor as platform_actor
from mlplat.cluster._local import ClusterState as ClusterState
from mlplat.cluster._local import NodeSpec as NodeSpec
from mlplat.cluster._local import cluster_down as cluster_down
from mlplat.cluster._local import cluster_status as cluster_status
from mlplat.cluster._local import cluster_up as cluster_up
from mlplat.cluster._local import node_specs as node_specs
from mlplat.cluster._local import pool_resource as pool_resource
from mlplat.cluster._local import pool_selector as pool_selector
from mlplat.cluster._local import start_test_cluster as start_test_cluster

__all__ = [
    "PLATFORM_NAMESPACE",
    "PLATFORM_POOL",
    "ClusterState",
    "NodeSpec",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "node_info",
    "node_specs",
    "platform_actor",
    "pool_resource",
    "pool_selector",
    "start_test_cluster",
]
