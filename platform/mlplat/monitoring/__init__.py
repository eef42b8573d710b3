"""Monitoring plane: drift of served traffic, business KPIs, alerts and drift-triggered retraining.

``DriftMonitor`` is the plain logic (fast Evidently-default tests on cached reference profiles,
tumbling windows, state in a ``DriftStore``); ``get_drift_monitor`` returns the detached
``mlplat-drift-monitor`` actor that wraps it, exports its metrics (Ray and Prometheus), posts
critical drift to Alertmanager (``post_alert``) and submits retraining (``RetrainPolicy``). The
contract is docs/contracts/monitoring.md.
"""

from mlplat.monitoring._actor import NAMESPACE as NAMESPACE
from mlplat.monitoring._actor import get_drift_monitor as get_drift_monitor
from mlplat.monitoring._alerts import alertmanager_url as alertmanager_url
from mlplat.monitoring._alerts import post_alert as post_alert
from mlplat.monitoring._drift import DEFAULT_MAX_BUFFER_ROWS as DEFAULT_MAX_BUFFER_ROWS
from mlplat.monitoring._drift import DEFAULT_MIN_ROWS as DEFAULT_MIN_ROWS
from mlplat.monitoring._drift import DriftMonitor as DriftMonitor
from mlplat.monitoring._drift import DriftMonitorStats as DriftMonitorStats
from mlplat.monitoring._drift import WindowStats as WindowStats
from mlplat.monitoring._fast import MISSING_METHOD as MISSING_METHOD
from mlplat.monitoring._fast import ReferenceProfile as ReferenceProfile
from mlplat.monitoring._fast import fast_drift as fast_drift
from mlplat.monitoring._kpi import KpiReport as KpiReport
from mlplat.monitoring._kpi import WindowKpi as WindowKpi
from mlplat.monitoring._kpi import kpi_report as kpi_report
from mlplat.monitoring._metrics import METRIC_NAMES as METRIC_NAMES
from mlplat.monitoring._metrics import Metrics as Metrics
from mlplat.monitoring._metrics import exported_names as exported_names
from mlplat.monitoring._retrain import RetrainPolicy as RetrainPolicy
from mlplat.monitoring._rules import render_alertmanager_config as render_alertmanager_config
from mlplat.monitoring._rules import render_prometheus_config as render_prometheus_config
from mlplat.monitoring._rules import render_prometheus_rules as render_prometheus_rules
from mlplat.monitoring._store import DriftStore as DriftStore

__all__ = [
    "DEFAULT_MAX_BUFFER_ROWS",
    "DEFAULT_MIN_ROWS",
    "METRIC_NAMES",
    "MISSING_METHOD",
    "NAMESPACE",
    "DriftMonitor",
    "DriftMonitorStats",
    "DriftStore",
    "KpiReport",
    "Metrics",
    "ReferenceProfile",
    "RetrainPolicy",
    "WindowKpi",
    "WindowStats",
    "alertmanager_url",
    "exported_names",
    "fast_drift",
    "get_drift_monitor",
    "kpi_report",
    "post_alert",
    "render_alertmanager_config",
    "render_prometheus_config",
    "render_prometheus_rules",
]
