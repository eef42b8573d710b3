"""Monitoring plane: drift of served traffic against the training reference.

``DriftMonitor`` is the plain logic (Evidently 0.7 per-feature ``ValueDrift`` over bounded windows);
``get_drift_monitor`` returns the detached ``mlplat-drift-monitor`` actor that wraps it. The
contract is docs/contracts/monitoring.md.
"""

from mlplat.monitoring._actor import DRIFT_MONITOR_NAME as DRIFT_MONITOR_NAME
from mlplat.monitoring._actor import NAMESPACE as NAMESPACE
from mlplat.monitoring._actor import get_drift_monitor as get_drift_monitor
from mlplat.monitoring._drift import DEFAULT_MAX_BUFFER_ROWS as DEFAULT_MAX_BUFFER_ROWS
from mlplat.monitoring._drift import DEFAULT_MIN_ROWS as DEFAULT_MIN_ROWS
from mlplat.monitoring._drift import MISSING_METHOD as MISSING_METHOD
from mlplat.monitoring._drift import DriftMonitor as DriftMonitor
from mlplat.monitoring._drift import DriftMonitorStats as DriftMonitorStats
from mlplat.monitoring._drift import WindowStats as WindowStats

__all__ = [
    "DEFAULT_MAX_BUFFER_ROWS",
    "DEFAULT_MIN_ROWS",
    "DRIFT_MONITOR_NAME",
    "MISSING_METHOD",
    "NAMESPACE",
    "DriftMonitor",
    "DriftMonitorStats",
    "WindowStats",
    "get_drift_monitor",
]
