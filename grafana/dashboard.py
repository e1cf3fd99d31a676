"""The Grafana dashboard over the series the probe, the shipper and the rule runner serve.

``python -m grafana.dashboard`` writes ``grafana/regwatch.json``, the file users import (Dashboards >
New > Import) or provision from a folder. The panels are data (``PANELS``); the layout, ids and
refIds follow from their order.

The data source is a dashboard variable (``datasource``, of type ``datasource``, query
``prometheus``) and every panel asks for ``${datasource}``, not an import input (``__inputs`` /
``${DS_PROMETHEUS}``): only the import API replaces inputs (``pkg/services/dashboardimport/utils/
dash_template_evaluator.go``, called from ``dashboardimport/service/service.go``); file provisioning
saves the JSON as it is (``pkg/services/provisioning/dashboards/file_reader.go``), so a
``${DS_PROMETHEUS}`` stayed a data source uid that does not exist. A ``$``-uid is resolved by the
front end to the variable's current value (``public/app/features/plugins/datasource_srv.ts``,
``getInstanceSettings``), and a ``datasource`` variable with nothing chosen takes the default
Prometheus data source: the same file works imported and provisioned.

Kept to what Grafana 10.0 to 12.x load without a migration changing it: ``schemaVersion`` 38, the
newest Grafana 10.0's front end knows (``DashboardMigrator.ts``; v39, the ``timeSeriesTable``
transformation's options, came with grafana/grafana#76801 in 10.3). A file at 39 is read by 10.0
to 10.2 all the same (their migrator runs only steps above the file's version), but saying 38 is
saying what the oldest supported release writes. The later steps (v39 ``timeSeriesTable``, v40
``refresh`` as a string, v41 no ``timepicker.time_options``, v42 ``hideFrom`` overrides) find
nothing to change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.traffic import COUNTED_FAILURES

PATH = Path(__file__).with_name("regwatch.json")
SCHEMA_VERSION = 38
UID = "regwatch-prometheus"
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}
MIN_GRAFANA = "10.0.0"  # schemaVersion 38 and data source references by uid: stated in docs/monitoring.md
COLUMNS = 24  # Grafana's grid (GRID_COLUMN_COUNT)

REGISTRY_KINDS = "registration|retrieval|version|error"
COUNTED = "|".join(COUNTED_FAILURES)  # what the error rule counts (contract.traffic)


@dataclass(frozen=True)
class Panel:
    title: str
    type: str  # timeseries, stat, table, bargauge
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    instant: bool = False


PANELS: tuple[Panel, ...] = (
    Panel("Availability now", "stat", (('min by (target, environment) (platform_availability{target=~"$target"})',
                                        "{{target}} ({{environment}})"),),
          unit="bool_on_off", width=8, height=5, instant=True,
          description="1 when the target's last health check was up (regwatch probe)."),
    Panel("Availability", "timeseries", (('min by (target) (platform_availability{target=~"$target"})', "{{target}}"),),
          unit="bool_on_off", width=16, height=5),
    Panel("Probe latency p95 per step", "timeseries", (
        ('histogram_quantile(0.95, sum by (le, target, step) '
         '(rate(regwatch_probe_duration_seconds_bucket{target=~"$target"}[$__rate_interval])))',
         "{{target}} {{step}}"),),
          unit="s", description="Health check and each step of the synthetic registry transaction."),
    Panel("Probe checks per result", "timeseries", (
        ('sum by (target, step, result) (rate(regwatch_probe_checks_total{target=~"$target"}[$__rate_interval]))',
         "{{target}} {{step}} {{result}}"),), unit="ops"),
    Panel("Registry operations per kind", "timeseries", (
        ('max by (kind) (sum by (kind, source) '
         f'(rate(regwatch_registry_calls_total{{kind=~"{REGISTRY_KINDS}"}}[$__rate_interval])))', "{{kind}}"),),
          unit="ops", description="Users' registry calls indexed by the shipper (the probe's left out), each "
                                  "counted once: an action both the access log and the audit trail record is "
                                  "the larger of the two sources' rates."),
    Panel("Error ratio", "timeseries", (
        (f'max(sum by (source) (rate(regwatch_registry_calls_total{{failure=~"{COUNTED}"}}[$__rate_interval]))) '
         '/ clamp_min(max(sum by (source) '
         f'(rate(regwatch_registry_calls_total{{kind=~"{REGISTRY_KINDS}"}}[$__rate_interval]))), 1e-9)',
         "error ratio"),),
          unit="percentunit", description="Failed calls that mean something is wrong (5xx, 401, 403, 429) over "
                                          "all calls, as the registry-error-ratio rule counts them."),
    Panel("Busiest models", "bargauge", (
        ('topk(10, sum by (model) (increase(regwatch_registry_events_total{model!=""}[$__range])))', "{{model}}"),),
          instant=True, options={"orientation": "horizontal", "displayMode": "gradient"}),
    Panel("Shipper lag", "timeseries", (('sum by (instance) (regwatch_bytes_behind)', "{{instance}} bytes behind"),
                                        ('sum by (instance) (regwatch_queue_depth)', "{{instance}} queued events")),
          unit="short", description="Bytes of the tailed files not read yet, and events waiting for Elasticsearch."),
    Panel("Shipper throughput and dead letters", "timeseries", (
        ('sum by (kind) (rate(regwatch_events_indexed_total[$__rate_interval]))', "{{kind}}"),
        ('sum by (reason) (rate(regwatch_deadletters_total[$__rate_interval]))', "dead-letter {{reason}}")),
          unit="ops"),
    Panel("Alerts firing", "timeseries",
          (('sum by (rule, severity) (regwatch_alerts_firing)', "{{rule}} ({{severity}})"),),
          unit="short"),
    Panel("Rule cycle p95", "timeseries", (
        ('histogram_quantile(0.95, sum by (le, instance) (rate(regwatch_rule_cycle_duration_seconds_bucket'
         '[$__rate_interval])))', "{{instance}}"),), unit="s"),
)


def _panel(index: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    targets = [{"datasource": DATASOURCE, "refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend,
                "range": not panel.instant, "instant": panel.instant, "editorMode": "code"}
               for n, (expr, legend) in enumerate(panel.exprs)]
    return {"id": index + 1, "type": panel.type, "title": panel.title, "description": panel.description,
            "datasource": DATASOURCE, "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []}, "options": dict(panel.options),
            "targets": targets}


def dashboard() -> dict[str, Any]:
    panels, x, y, row_height = [], 0, 0, 0
    for index, panel in enumerate(PANELS):
        if x + panel.width > COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(index, panel, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    target_variable = {"name": "target", "label": "target", "type": "query", "datasource": DATASOURCE,
                       "query": {"query": "label_values(platform_availability, target)", "refId": "targets"},
                       "definition": "label_values(platform_availability, target)", "refresh": 2,
                       "includeAll": True, "multi": True, "allValue": ".*",
                       "current": {"text": "All", "value": "$__all"}, "hide": 0, "sort": 1}
    datasource_variable = {"name": DATASOURCE_VARIABLE, "label": "Prometheus", "type": "datasource",
                           "query": "prometheus", "current": {}, "options": [], "regex": "", "hide": 0,
                           "includeAll": False, "multi": False, "refresh": 1}
    return {
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": MIN_GRAFANA},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}]
        + [{"type": "panel", "id": kind, "name": kind, "version": ""} for kind in sorted({p.type for p in PANELS})],
        "uid": UID, "title": "regwatch: model registry (Prometheus)", "tags": ["regwatch", "mlflow"],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "timezone": "", "timepicker": {},
        "annotations": {"list": []}, "links": [], "templating": {"list": [datasource_variable, target_variable]},
        "panels": panels,
    }


def write(path: Path = PATH) -> None:
    path.write_text(json.dumps(dashboard(), indent=2) + "\n")


if __name__ == "__main__":
    write()
