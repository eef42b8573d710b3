"""Alerts straight to Alertmanager's v2 API, for what must not wait for a Prometheus scrape.

Critical drift (and a crossed cost budget, and the deployment plane's rollbacks) are posted here
as they happen; the Prometheus rules in cluster/monitoring/ raise the same alerts from the
exported metrics as a second path. Alertmanager de-duplicates the two by their labels.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from mlplat.config import PlatformConfig
from mlplat.errors import InfraError, UserError

ALERTMANAGER_ENV = "MLPLAT_ALERTMANAGER_URL"
SEVERITIES = ("info", "warning", "critical")


def alertmanager_url(cfg: PlatformConfig) -> str | None:
    """``$MLPLAT_ALERTMANAGER_URL`` if set (read now, not at import), else
    ``monitoring.alertmanager_url``; None when neither is set (alerts then go only through
    Prometheus rules).

    Example:
        >>> alertmanager_url(cfg)
        'http://127.0.0.1:9093'
    """
    url = os.environ.get(ALERTMANAGER_ENV) or cfg.monitoring.alertmanager_url
    return url.rstrip("/") if url else None


def post_alert(
    cfg: PlatformConfig,
    name: str,
    severity: str,
    team: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    *,
    url: str | None = None,
    resolve_after_s: float | None = None,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Post one alert to Alertmanager (``POST /api/v2/alerts``).

    Alertmanager routes it by ``severity`` and ``team`` (cluster/monitoring/alertmanager.yaml:
    critical → PagerDuty, warning → Opsgenie). Posting the same labels again refreshes the alert
    rather than creating a second one.

    Args:
        cfg: Platform config (teams; the Alertmanager URL).
        name: ``alertname`` label, e.g. ``ModelDriftCritical`` or ``DeploymentRolledBack``.
        severity: ``info``, ``warning`` or ``critical``.
        team: Owning team from platform.yaml (routing and the on-call that gets paged).
        labels: More labels (``model``, ``version``…); values must be strings.
        annotations: ``summary``, ``description``, ``runbook_url``… shown to the on-call.
        url: Alertmanager base URL; defaults to ``alertmanager_url(cfg)``.
        resolve_after_s: Sets ``endsAt`` this far ahead (Alertmanager's resolve timeout
            otherwise, 5 min by default).
        timeout_s: HTTP timeout.

    Returns:
        The alert object that was posted.

    Raises:
        NotFoundError: unknown team.
        UserError: unknown severity, empty name, non-string label values, or no URL configured.
        InfraError: Alertmanager cannot be reached or refused the alert.

    Example:
        >>> post_alert(cfg, "DeploymentRolledBack", "critical", "risk",
        ...            {"model": "fraud", "version": "3"}, {"summary": "p99 above the SLO"})
        {'labels': {'alertname': 'DeploymentRolledBack', ...}, ...}
    """
    cfg.team(team)
    if severity not in SEVERITIES:
        raise UserError(f"Alert severity must be one of {list(SEVERITIES)}, got {severity!r}.")
    if not name:
        raise UserError("An alert needs a name (the alertname label).")
    extra = dict(labels or {})
    bad = {k: v for k, v in {**extra, **(annotations or {})}.items() if not isinstance(v, str)}
    if bad:
        raise UserError(f"Alert labels and annotations must be strings; got {bad}.")
    base = url or alertmanager_url(cfg)
    if not base:
        raise UserError(f"No Alertmanager URL: set ${ALERTMANAGER_ENV} or "
                        "monitoring.alertmanager_url in platform.yaml.")
    now = datetime.now(tz=UTC)
    alert: dict[str, Any] = {
        "labels": {**extra, "alertname": name, "severity": severity, "team": team},
        "annotations": dict(annotations or {}),
        "startsAt": now.isoformat(),
        "generatorURL": "mlplat://monitoring",
    }
    if resolve_after_s is not None:
        alert["endsAt"] = (now + timedelta(seconds=resolve_after_s)).isoformat()
    request = urllib.request.Request(
        f"{base.rstrip('/')}/api/v2/alerts", data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise InfraError(f"Alertmanager at {base} refused alert {name}: HTTP {exc.code} "
                         f"{exc.read()[:300]!r}") from exc
    except OSError as exc:
        raise InfraError(f"Cannot post alert {name} to Alertmanager at {base}: {exc}. Is it "
                         f"running? (set ${ALERTMANAGER_ENV} to its URL)") from exc
    return alert
