"""Governance plane: read models over the planes — the model catalog, lineage and cost.

(The tamper-evident audit log every plane writes to sits below the planes, in ``mlplat.audit``.)
``CostMeter`` charges
jobs, trials and replicas to team and model at the pool prices in platform.yaml, and
``get_cost_meter`` returns the detached ``mlplat-cost-meter`` actor wrapping it. The contract is
docs/contracts/governance.md.
"""

from mlplat.governance._actor import get_cost_meter as get_cost_meter
from mlplat.governance._catalog import Catalog as Catalog
from mlplat.governance._catalog import CatalogEntry as CatalogEntry
from mlplat.governance._catalog import catalog_asgi_app as catalog_asgi_app
from mlplat.governance._catalog import default_catalog_path as default_catalog_path
from mlplat.governance._catalog import refresh_catalog as refresh_catalog
from mlplat.governance._cost import JOB_METADATA_KEYS as JOB_METADATA_KEYS
from mlplat.governance._cost import CostMeter as CostMeter
from mlplat.governance._cost import CostReport as CostReport
from mlplat.governance._cost import CostStore as CostStore
from mlplat.governance._digest import write_cost_digest as write_cost_digest
from mlplat.governance._lineage import LineageGraph as LineageGraph
from mlplat.governance._lineage import LineageNode as LineageNode
from mlplat.governance._lineage import deployment_ranges as deployment_ranges
from mlplat.governance._lineage import find_manifest as find_manifest
from mlplat.governance._lineage import lineage_graph as lineage_graph
from mlplat.governance._lineage import parse_ref as parse_lineage_ref

__all__ = [
    "JOB_METADATA_KEYS",
    "Catalog",
    "CatalogEntry",
    "CostMeter",
    "CostReport",
    "CostStore",
    "LineageGraph",
    "LineageNode",
    "catalog_asgi_app",
    "default_catalog_path",
    "deployment_ranges",
    "find_manifest",
    "get_cost_meter",
    "lineage_graph",
    "parse_lineage_ref",
    "refresh_catalog",
    "write_cost_digest",
]
