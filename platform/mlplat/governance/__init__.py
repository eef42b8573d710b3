"""Governance plane: the tamper-evident audit log and cost attribution.

``AuditLog`` appends privileged actions to a hash chain and verifies it; ``CostMeter`` charges
jobs, trials and replicas to team and model at the pool prices in platform.yaml, and
``get_cost_meter`` returns the detached ``mlplat-cost-meter`` actor wrapping it. The contract is
docs/contracts/governance.md.
"""

from mlplat.governance._actor import COST_METER_NAME as COST_METER_NAME
from mlplat.governance._actor import get_cost_meter as get_cost_meter
from mlplat.governance._audit import GENESIS_HASH as GENESIS_HASH
from mlplat.governance._audit import AuditLog as AuditLog
from mlplat.governance._audit import AuditStore as AuditStore
from mlplat.governance._audit import AuditVerification as AuditVerification
from mlplat.governance._audit import SqliteAuditStore as SqliteAuditStore
from mlplat.governance._audit import record_hash as record_hash
from mlplat.governance._cost import JOB_METADATA_KEYS as JOB_METADATA_KEYS
from mlplat.governance._cost import CostMeter as CostMeter
from mlplat.governance._cost import CostReport as CostReport

__all__ = [
    "COST_METER_NAME",
    "GENESIS_HASH",
    "JOB_METADATA_KEYS",
    "AuditLog",
    "AuditStore",
    "AuditVerification",
    "CostMeter",
    "CostReport",
    "SqliteAuditStore",
    "get_cost_meter",
    "record_hash",
]
