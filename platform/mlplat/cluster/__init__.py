"""The local multi-pool Ray cluster: one machine emulating the production node pools.

``mlplat cluster up`` starts a real cluster with ``ray start`` (head + one Ray node per emulated
pool node), each node carrying its pool as a node label and a ``pool:<name>`` custom resource.
Tests build the same shape in-process with ``ray.cluster_utils.Cluster``.
``mlplat cluster render`` derives the production KubeRay manifests and Terraform variables from
the same platform.yaml (``render_all``).
"""

from mlplat.cluster._actors import CONTROLLER_ACTOR as CONTROLLER_ACTOR
from mlplat.cluster._actors import COST_METER_ACTOR as COST_METER_ACTOR
from mlplat.cluster._actors import DRIFT_MONITOR_ACTOR as DRIFT_MONITOR_ACTOR
from mlplat.cluster._actors import JOB_QUEUE_ACTOR as JOB_QUEUE_ACTOR
from mlplat.cluster._actors import LLM_GUARD_ACTOR as LLM_GUARD_ACTOR
from mlplat.cluster._actors import PLATFORM_NAMESPACE as PLATFORM_NAMESPACE
from mlplat.cluster._actors import PLATFORM_POOL as PLATFORM_POOL
from mlplat.cluster._actors import node_info as node_info
from mlplat.cluster._actors import platform_actor as platform_actor
from mlplat.cluster._actors import survives_restart as survives_restart
from mlplat.cluster._kuberay import INGRESS_READ_TIMEOUT_S as INGRESS_READ_TIMEOUT_S
from mlplat.cluster._kuberay import INGRESS_REPLAYED_ON as INGRESS_REPLAYED_ON
from mlplat.cluster._kuberay import INGRESS_RETRY_TRIES as INGRESS_RETRY_TRIES
from mlplat.cluster._kuberay import NODE_GROUPS as NODE_GROUPS
from mlplat.cluster._kuberay import node_labels as node_labels
from mlplat.cluster._kuberay import parse_taint as parse_taint
from mlplat.cluster._kuberay import ray_pin as ray_pin
from mlplat.cluster._kuberay import team_namespace as team_namespace
from mlplat.cluster._local import ClusterState as ClusterState
from mlplat.cluster._local import NodeSpec as NodeSpec
from mlplat.cluster._local import cluster_down as cluster_down
from mlplat.cluster._local import cluster_status as cluster_status
from mlplat.cluster._local import cluster_up as cluster_up
from mlplat.cluster._local import node_specs as node_specs
from mlplat.cluster._local import pool_resource as pool_resource
from mlplat.cluster._local import pool_selector as pool_selector
from mlplat.cluster._local import start_test_cluster as start_test_cluster
from mlplat.cluster._render import GENERATED as GENERATED
from mlplat.cluster._render import Rendered as Rendered
from mlplat.cluster._render import render_all as render_all
from mlplat.cluster._render import stale_files as stale_files
from mlplat.cluster._render import team_quota as team_quota
from mlplat.cluster._render import write_rendered as write_rendered

__all__ = [
    "CONTROLLER_ACTOR",
    "COST_METER_ACTOR",
    "DRIFT_MONITOR_ACTOR",
    "GENERATED",
    "INGRESS_READ_TIMEOUT_S",
    "INGRESS_REPLAYED_ON",
    "INGRESS_RETRY_TRIES",
    "JOB_QUEUE_ACTOR",
    "LLM_GUARD_ACTOR",
    "NODE_GROUPS",
    "PLATFORM_NAMESPACE",
    "PLATFORM_POOL",
    "ClusterState",
    "NodeSpec",
    "Rendered",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "node_info",
    "node_labels",
    "node_specs",
    "parse_taint",
    "platform_actor",
    "pool_resource",
    "pool_selector",
    "ray_pin",
    "render_all",
    "stale_files",
    "start_test_cluster",
    "survives_restart",
    "team_namespace",
    "team_quota",
    "write_rendered",
]
