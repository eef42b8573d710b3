"""The tamper-evident audit log, below every plane: each privileged action is appended to a
hash chain (SQLite or PostgreSQL) with signed head checkpoints, and verified on demand.

Every plane writes to it (``audit_sink(cfg)`` opens it before the action it records, so an
action that cannot be audited is never taken); governance reads it. The contract is
docs/contracts/governance.md (audit section).

Example:
    >>> from mlplat.audit import AuditLog
    >>> AuditLog(cfg).verify().ok
    True
"""

from mlplat.audit._chain import canonical_body as canonical_body
from mlplat.audit._chain import record_hash as record_hash
from mlplat.audit._log import PRIVILEGED_ACTIONS as PRIVILEGED_ACTIONS
from mlplat.audit._log import AuditBatch as AuditBatch
from mlplat.audit._log import AuditLog as AuditLog
from mlplat.audit._log import AuditVerification as AuditVerification
from mlplat.audit._pg import PostgresAuditStore as PostgresAuditStore
from mlplat.audit._sink import AuditSink as AuditSink
from mlplat.audit._sink import audit_sink as audit_sink
from mlplat.audit._sink import audited as audited
from mlplat.audit._store import GENESIS_HASH as GENESIS_HASH
from mlplat.audit._store import AuditStore as AuditStore
from mlplat.audit._store import Mark as AuditMark
from mlplat.audit._store import MemoryAuditStore as MemoryAuditStore
from mlplat.audit._store import SqliteAuditStore as SqliteAuditStore

__all__ = [
    "GENESIS_HASH",
    "PRIVILEGED_ACTIONS",
    "AuditBatch",
    "AuditLog",
    "AuditMark",
    "AuditSink",
    "AuditStore",
    "AuditVerification",
    "MemoryAuditStore",
    "PostgresAuditStore",
    "SqliteAuditStore",
    "audit_sink",
    "audited",
    "canonical_body",
    "record_hash",
]
