"""Governance plane: the tamper-evident audit log, the model catalog, lineage and cost.

``AuditLog`` appends privileged actions to a hash chain and verifies it; ``CostMeter`` charges
jobs, trials and replicas to team and model at the pool prices in platform.yaml, and
``get_cost_meter`` returns the detached ``mlplat-cost-meter`` actor wrapping it. The contract is
docs/contracts/governance.md.
"""

from mlplat.governance._actor import get_cost_meter as get_cost_meter
from mlplat.governance._audit import PRIVILEGED_ACTIONS as PRIVILEGED_ACTIONS
from mlplat.governance._audit import AuditBatch as AuditBatch
from mlplat.governance._audit import AuditLog as AuditLog
from mlplat.governance._audit import AuditVerification as AuditVerification
from mlplat.governance._audit_chain import canonical_body as canonical_body
from mlplat.governance._audit_chain import record_hash as record_hash
from mlplat.governance._audit_pg import PostgresAuditStore as PostgresAuditStore
from mlplat.governance._audit_store import GENESIS_HASH as GENESIS_HASH
from mlplat.governance._audit_store import AuditStore as AuditStore
from mlplat.governance._audit_store import Mark as AuditMark
from mlplat.governance._audit_store import MemoryAuditStore as MemoryAuditStore
from mlplat.governance._audit_store import SqliteAuditStore as SqliteAuditStore
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
    "GENESIS_HASH",
    "JOB_METADATA_KEYS",
    "PRIVILEGED_ACTIONS",
    "AuditBatch",
    "AuditLog",
    "AuditMark",
    "AuditStore",
    "AuditVerification",
    "Catalog",
    "CatalogEntry",
    "CostMeter",
    "CostReport",
    "CostStore",
    "LineageGraph",
    "LineageNode",
    "MemoryAuditStore",
    "PostgresAuditStore",
    "SqliteAuditStore",
    "canonical_body",
    "catalog_asgi_app",
    "default_catalog_path",
    "deployment_ranges",
    "find_manifest",
    "get_cost_meter",
    "lineage_graph",
    "parse_lineage_ref",
    "record_hash",
    "refresh_catalog",
    "write_cost_digest",
]
