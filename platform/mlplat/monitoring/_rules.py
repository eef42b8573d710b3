"""Prometheus rules, the Alertmanager config and a local Prometheus config, from platform.yaml.

The files under cluster/monitoring/ are these renderings (``mlplat.monitoring.render_*``; a unit
test fails when a committed file differs from what platform.yaml renders), so thresholds, SLOs,
teams and windows live only in platform.yaml. `mlplat cluster render` wraps them in ConfigMaps.
"""

from __future__ import annotations

from typing import Any

import yaml

from mlplat.config import PlatformConfig

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
OPSGENIE_API_URL = "https://api.opsgenie.com/"
SECRETS_DIR = "/etc/alertmanager/secrets"
HEADER = ("# Generated from platform.yaml by mlplat.monitoring.{fn}(cfg); do not edit by hand —\n"
          "# change platform.yaml and re-render (a unit test compares this file to the rendering).\n")

_TEAM_OF_MODEL = "max by (model, team) (mlplat_model_info)"
_TEAM_OF_APP = ('max by (application, team) (label_replace(mlplat_model_info, "application", '
                '"$1", "model", "(.*)"))')


def _dump(doc: dict[str, Any], fn: str) -> str:
    return HEADER.format(fn=fn) + yaml.safe_dump(doc, sort_keys=False, width=100)


def render_prometheus_rules(cfg: PlatformConfig, profile: str = "prod") -> str:
    """Alerting rules: drift (critical/warning/stale report/prediction), serving SLO breach
    (error rate and p99 vs ``promotion.rollback_*``) and team cost budgets.

    Every alert carries ``severity`` and ``team`` labels, which Alertmanager routes on.

    Example:
        >>> "ModelDriftCritical" in render_prometheus_rules(cfg)
        True
    """
    timing = cfg.profiles[profile].monitoring_timing
    stale_s = int(cfg.slos.monitoring.drift_report_after_window_s + timing.drift_window_s)
    err = cfg.promotion.rollback_max_error_rate
    p99 = cfg.promotion.rollback_max_p99_ms
    rate = "5m"
    drift = [
        {"alert": "ModelDriftCritical",
         "expr": f"(max by (model, version) (mlplat_drift_severity) >= 2) * on (model) "
                 f"group_left (team) {_TEAM_OF_MODEL}",
         "labels": {"severity": "critical"},
         "annotations": {
             "summary": "{{ $labels.model }} v{{ $labels.version }}: critical data drift",
             "description": f"At least {cfg.monitoring.drift_share_critical:.0%} of the features "
                            "drifted in the last window (monitoring.drift_share_critical); a "
                            "retraining job is submitted (see `mlplat drift report`)."}},
        {"alert": "ModelDriftWarning",
         "expr": f"(max by (model, version) (mlplat_drift_severity) == 1) * on (model) "
                 f"group_left (team) {_TEAM_OF_MODEL}",
         "labels": {"severity": "warning"},
         "annotations": {
             "summary": "{{ $labels.model }} v{{ $labels.version }}: data drift warning",
             "description": f"At least {cfg.monitoring.drift_share_warning:.0%} of the features "
                            "drifted in the last window (monitoring.drift_share_warning)."}},
        {"alert": "PredictionDrift",
         "expr": f"(max by (model, version) (mlplat_drift_prediction_drifted) == 1) * on (model) "
                 f"group_left (team) {_TEAM_OF_MODEL}",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.model }} v{{ $labels.version }}: the model's "
                                    "score distribution drifted"}},
        {"alert": "DriftReportStale",
         "expr": f"(time() - max by (model, version) (mlplat_drift_last_report_timestamp_seconds) "
                 f"> {stale_s}) * on (model) group_left (team) {_TEAM_OF_MODEL}",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.model }} v{{ $labels.version }}: no drift "
                                    f"report for more than {stale_s}s (window + "
                                    "slos.monitoring.drift_report_after_window_s)"}},
    ]
    slo = [
        {"alert": "ServingErrorRateHigh",
         "expr": f"(sum by (application) (rate(ray_serve_deployment_error_counter_total[{rate}])) "
                 f"/ sum by (application) (rate(ray_serve_deployment_request_counter_total[{rate}])) "
                 f"> {err}) * on (application) group_left (team) {_TEAM_OF_APP}",
         "for": "2m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.application }}: error rate {{ $value | "
                                    "humanizePercentage }} above the SLO "
                                    f"({err:.0%}, promotion.rollback_max_error_rate)"}},
        {"alert": "ServingLatencyP99High",
         "expr": f"(histogram_quantile(0.99, sum by (application, le) "
                 f"(rate(ray_serve_deployment_processing_latency_ms_bucket[{rate}]))) > {p99:g}) "
                 f"* on (application) group_left (team) {_TEAM_OF_APP}",
         "for": "2m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.application }}: p99 {{ $value }} ms above the "
                                    f"SLO ({p99:g} ms, promotion.rollback_max_p99_ms)"}},
    ]
    cost = [
        {"alert": "TeamBudgetExceeded",
         "expr": "max by (team) (mlplat_cost_team_week_usd) > "
                 "max by (team) (mlplat_cost_team_budget_usd)",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "team {{ $labels.team }} spent ${{ $value }} in the last 7 "
                                    "days, over teams.{{ $labels.team }}.budget_usd_per_week"}},
    ]
    return _dump({"groups": [{"name": "mlplat-drift", "rules": drift},
                             {"name": "mlplat-slo", "rules": slo},
                             {"name": "mlplat-cost", "rules": cost}]},
                 "render_prometheus_rules")


def render_alertmanager_config(
    cfg: PlatformConfig,
    *,
    pagerduty_url: str = PAGERDUTY_EVENTS_URL,
    opsgenie_api_url: str = OPSGENIE_API_URL,
    secrets_dir: str = SECRETS_DIR,
    group_wait_s: float = 30,
) -> str:
    """Alertmanager routing: ``severity=critical`` pages the team's PagerDuty service (Events
    API v2), everything else goes to the team's Opsgenie responders; alerts without a known
    team go to the platform receivers. Keys are read from files under ``secrets_dir``
    (``pagerduty-<team>``, ``opsgenie``), mounted from a Kubernetes Secret — never inline.

    Tests render a copy pointing at a local HTTP receiver with short waits.

    Example:
        >>> "risk-pagerduty" in render_alertmanager_config(cfg)
        True
    """
    teams = sorted(cfg.teams)
    wait = f"{group_wait_s:g}s"
    routes: list[dict[str, Any]] = []
    receivers: list[dict[str, Any]] = []

    def pagerduty(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "pagerduty_configs": [{
            "routing_key_file": f"{secrets_dir}/{key}",
            "url": pagerduty_url,
            "severity": "critical",
            "description": "{{ .CommonAnnotations.summary }}",
            "details": {"team": "{{ .CommonLabels.team }}", "model": "{{ .CommonLabels.model }}",
                        "version": "{{ .CommonLabels.version }}",
                        "description": "{{ .CommonAnnotations.description }}"},
        }]}

    def opsgenie(name: str, responder: str | None) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "api_key_file": f"{secrets_dir}/opsgenie",
            "api_url": opsgenie_api_url,
            "message": "{{ .CommonAnnotations.summary }}",
            "priority": "P3",
            "tags": "mlplat,{{ .CommonLabels.severity }},{{ .CommonLabels.team }}",
        }
        if responder:
            conf["responders"] = [{"name": responder, "type": "team"}]
        return {"name": name, "opsgenie_configs": [conf]}

    for team in teams:
        routes.append({"matchers": ['severity="critical"', f'team="{team}"'],
                       "receiver": f"{team}-pagerduty"})
    routes.append({"matchers": ['severity="critical"'], "receiver": "platform-pagerduty"})
    for team in teams:
        routes.append({"matchers": [f'team="{team}"'], "receiver": f"{team}-opsgenie"})
    for team in teams:
        receivers.append(pagerduty(f"{team}-pagerduty", f"pagerduty-{team}"))
        receivers.append(opsgenie(f"{team}-opsgenie", team))
    receivers.append(pagerduty("platform-pagerduty", "pagerduty-platform"))
    receivers.append(opsgenie("platform-opsgenie", None))
    doc = {
        "global": {"resolve_timeout": "5m"},
        "route": {"receiver": "platform-opsgenie",
                  "group_by": ["alertname", "team", "model", "version"],
                  "group_wait": wait, "group_interval": "5m", "repeat_interval": "4h",
                  "routes": routes},
        "inhibit_rules": [{"source_matchers": ['severity="critical"'],
                           "target_matchers": ['severity="warning"'],
                           "equal": ["alertname", "team", "model", "version"]}],
        "receivers": receivers,
    }
    return _dump(doc, "render_alertmanager_config")


def render_prometheus_config(
    cfg: PlatformConfig,
    *,
    targets: list[str] | None = None,
    alertmanager: str = "127.0.0.1:9093",
    rules_file: str = "prometheus-rules.yaml",
    scrape_interval_s: float = 15,
    evaluation_interval_s: float = 15,
) -> str:
    """A Prometheus config for the local cluster: scrape the drift monitor's and cost meter's
    exporters (``monitoring.*_metrics_port``), load the rules, alert to Alertmanager.

    Example:
        >>> "127.0.0.1:9464" in render_prometheus_config(cfg)
        True
    """
    targets = targets or [f"127.0.0.1:{cfg.monitoring.drift_metrics_port}",
                          f"127.0.0.1:{cfg.monitoring.cost_metrics_port}"]
    doc = {
        "global": {"scrape_interval": f"{scrape_interval_s:g}s",
                   "evaluation_interval": f"{evaluation_interval_s:g}s"},
        "rule_files": [rules_file],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "mlplat", "static_configs": [{"targets": targets}]}],
    }
    return _dump(doc, "render_prometheus_config")
