"""The saved objects regwatch ships: data views, Lens visualizations, dashboards, saved searches.

Each visualization is a small spec (data, at the top of this file) from which two things are
built: the Lens saved object Kibana imports, and the equivalent Elasticsearch aggregation the
tests run against a real node over demo data. ``python -m kibana.objects`` writes
``kibana/regwatch.ndjson``; a test checks the committed file equals this output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsers import streams

NDJSON = Path(__file__).with_name("regwatch.ndjson")

# -- data views --------------------------------------------------------------------------------

_TITLES = {"registration": "registrations", "retrieval": "retrievals", "version": "version changes",
           "error": "errors", "access": "access", "deadletter": "dead-letters", "alert": "alerts",
           "availability": "availability"}
DATA_VIEWS = {
    "regwatch-events": ("regwatch: all events", f"logs-{streams.PRODUCT}.*"),
    **{f"regwatch-{kind}": (f"regwatch: {_TITLES[kind]}", streams.pattern(kind=kind, kind_type=kind_type))
       for kind_type, kind in streams.all_kinds() if kind in _TITLES},
}


# -- visualization specs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    op: str  # count | percentile | unique_count | average | max
    field: str | None = None
    label: str = ""
    percentile: int | None = None
    kql: str | None = None  # a filter on this metric only (Lens "filter by")
    dsl: dict[str, Any] | None = None  # the same filter as Query DSL, for the equivalent aggregation


@dataclass(frozen=True)
class Vis:
    id: str
    title: str
    chart: str  # bar_stacked | line | metric | table | pie
    view: str
    metrics: tuple[Metric, ...]
    x_time: bool = False
    terms: tuple[str, ...] = ()  # bucket fields: for xy the split series, for table/pie the rows
    size: int = 10
    may_be_empty: str | None = None  # why an empty result is expected on the demo (said in the panel)
    description: str = ""


COUNT = Metric("count", label="Events")
FOUR_XX = {"range": {"http.response.status_code": {"gte": 400, "lt": 500}}}
FIVE_XX = {"range": {"http.response.status_code": {"gte": 500}}}

OVERVIEW = [
    Vis("regwatch-activity-over-time", "Registrations, retrievals and version changes over time", "bar_stacked",
        "regwatch-events", (COUNT,), x_time=True, terms=("data_stream.dataset",), size=7,
        description="Events per kind per interval: the registry's pulse."),
    Vis("regwatch-retrievals-by-model", "Retrievals by model (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name",)),
    Vis("regwatch-retrievals-by-version", "Retrievals by model version (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name", "modelregistry.model.version")),
    Vis("regwatch-errors-4xx-5xx", "Errors over time, 4xx and 5xx apart", "bar_stacked", "regwatch-error",
        (Metric("count", label="4xx", kql="http.response.status_code >= 400 and http.response.status_code < 500",
                dsl=FOUR_XX),
         Metric("count", label="5xx", kql="http.response.status_code >= 500", dsl=FIVE_XX)),
        x_time=True),
    Vis("regwatch-error-rate", "Error rate", "metric", "regwatch-events",
        (Metric("count", label="Errors", kql='data_stream.dataset : "modelregistry.error"',
                dsl={"term": {"data_stream.dataset": "modelregistry.error"}}),),
        description="Error events; compare with the activity panel for the rate."),
    Vis("regwatch-latency-percentiles", "Response time p50 / p95 / p99 (ns)", "line", "regwatch-events",
        (Metric("percentile", "event.duration", "p50", 50), Metric("percentile", "event.duration", "p95", 95),
         Metric("percentile", "event.duration", "p99", 99)), x_time=True),
    Vis("regwatch-availability-probes", "Availability (health probe)", "line", "regwatch-availability",
        (Metric("count", label="Probes up", kql="modelregistry.probe.up : true",
                dsl={"term": {"modelregistry.probe.up": True}}),
         Metric("count", label="Probes down", kql="modelregistry.probe.up : false",
                dsl={"term": {"modelregistry.probe.up": False}})), x_time=True,
        may_be_empty="filled by the availability probe; empty until one runs"),
    Vis("regwatch-requests-by-user", "Requests by user", "table", "regwatch-events", (COUNT,),
        terms=("user.name",)),
    Vis("regwatch-requests-by-source", "Requests by source address", "table", "regwatch-events", (COUNT,),
        terms=("source.ip",)),
    Vis("regwatch-latest-errors", "Latest errors", "table", "regwatch-error", (COUNT,),
        terms=("event.action", "http.response.status_code", "modelregistry.model.name"), size=20),
]

MODEL_ACTIVITY = [
    Vis("regwatch-model-versions", "Versions and their activity", "table", "regwatch-events", (COUNT,),
        terms=("modelregistry.model.version", "event.action")),
    Vis("regwatch-model-aliases", "Aliases set and removed", "table", "regwatch-version", (COUNT,),
        terms=("modelregistry.model.alias", "event.action", "modelregistry.model.version")),
    Vis("regwatch-model-stages", "Stage transitions", "table", "regwatch-version", (COUNT,),
        terms=("modelregistry.model.stage", "modelregistry.model.version")),
    Vis("regwatch-model-downloaders", "Who downloads it", "table", "regwatch-retrieval", (COUNT,),
        terms=("source.ip", "user_agent.original")),
    Vis("regwatch-model-churn", "Version churn over time", "bar_stacked", "regwatch-version", (COUNT,),
        x_time=True, terms=("event.action",)),
]

ALERTS = [
    Vis("regwatch-alerts-firing", "Alerts firing now", "metric", "regwatch-alert",
        (Metric("count", label="Firing", kql='event.action : "firing"', dsl={"term": {"event.action": "firing"}}),),
        may_be_empty="filled by the rule runner; empty until it runs"),
    Vis("regwatch-alerts-by-rule", "Alerts by rule and severity", "table", "regwatch-alert", (COUNT,),
        terms=("modelregistry.alert.rule", "modelregistry.alert.severity"),
        may_be_empty="filled by the rule runner; empty until it runs"),
    Vis("regwatch-alerts-timeline", "Alert timeline", "bar_stacked", "regwatch-alert", (COUNT,), x_time=True,
        terms=("event.action",), may_be_empty="filled by the rule runner; empty until it runs"),
]

SEARCHES = [
    ("regwatch-search-errors", "regwatch: errors", "regwatch-error",
     ["event.action", "http.response.status_code", "error.code", "error.message", "modelregistry.model.name",
      "source.ip", "url.path"]),
    ("regwatch-search-deadletters", "regwatch: dead-letters (raw line and reason)", "regwatch-deadletter",
     ["error.type", "error.message", "event.original", "log.file.path", "log.offset"]),
]

OVERVIEW_HELP = """**Model Registry Overview**

* **Activity over time**: events per kind (registration, retrieval, version, error, access).
* **Retrievals by model / by version**: what is being pulled, most first.
* **Errors, 4xx and 5xx apart**: client mistakes (4xx: missing models, bad names) against
  server failures (5xx: the registry or its proxy is down).
* **Error rate**: error events in the time range.
* **Response time p50 / p95 / p99**: from `event.duration` (nanoseconds) where the log has timings.
* **Availability**: results of the health probe (`metrics-modelregistry.availability-*`); empty
  until a probe runs.
* **Requests by user / by source**: who is calling.
* **Latest errors**: the failing operations, with status and model.

Dead-letters (lines that could not be parsed) are in the saved search *regwatch: dead-letters*.
"""

DASHBOARDS = [
    ("regwatch-dashboard-overview", "Model Registry Overview", OVERVIEW, OVERVIEW_HELP, False),
    ("regwatch-dashboard-model", "Model activity", MODEL_ACTIVITY,
     "Pick a model with the control above: its versions, aliases, stages, who downloads it, and how fast "
     "its versions change.", True),
    ("regwatch-dashboard-alerts", "Alerts", ALERTS,
     "Alert history from `logs-modelregistry.alert-*`, written by the rule runner.", False),
]


# -- Lens saved objects ------------------------------------------------------------------------

LAYER = "layer1"


def _metric_column(metric: Metric) -> dict[str, Any]:
    column: dict[str, Any] = {"label": metric.label or metric.op, "customLabel": bool(metric.label),
                              "dataType": "number", "isBucketed": False, "scale": "ratio"}
    if metric.op == "count":
        column.update(operationType="count", sourceField="___records___", params={"emptyAsNull": True})
    elif metric.op == "percentile":
        column.update(operationType="percentile", sourceField=metric.field, params={"percentile": metric.percentile})
    else:
        column.update(operationType=metric.op, sourceField=metric.field, params={"emptyAsNull": True})
    if metric.kql:
        column["filter"] = {"query": metric.kql, "language": "kuery"}
    return column


def _columns(vis: Vis) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """Lens columns, their order, the bucket column ids and the metric column ids."""
    columns: dict[str, Any] = {}
    buckets: list[str] = []
    metrics = [f"m{i}" for i in range(len(vis.metrics))]
    for i, name in enumerate(vis.terms):
        column_id = f"t{i}"
        columns[column_id] = {"label": f"Top {vis.size} {name}", "dataType": "string", "operationType": "terms",
                              "sourceField": name, "isBucketed": True, "scale": "ordinal",
                              "params": {"size": vis.size, "orderBy": {"type": "column", "columnId": metrics[0]},
                                         "orderDirection": "desc", "otherBucket": True, "missingBucket": False}}
        buckets.append(column_id)
    if vis.x_time:
        columns["x"] = {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
                        "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
                        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}
        buckets.append("x")
    for column_id, metric in zip(metrics, vis.metrics, strict=True):
        columns[column_id] = _metric_column(metric)
    return columns, buckets + metrics, buckets, metrics


def _visualization(vis: Vis, buckets: list[str], metrics: list[str]) -> tuple[str, dict[str, Any]]:
    if vis.chart == "metric":
        return "lnsMetric", {"layerId": LAYER, "layerType": "data", "metricAccessor": metrics[0]}
    if vis.chart == "table":
        return "lnsDatatable", {"layerId": LAYER, "layerType": "data",
                                "columns": [{"columnId": c} for c in buckets + metrics]}
    if vis.chart == "pie":
        return "lnsPie", {"shape": "donut", "layers": [{"layerId": LAYER, "layerType": "data",
                                                        "primaryGroups": buckets, "metrics": metrics}]}
    layer: dict[str, Any] = {"layerId": LAYER, "layerType": "data", "seriesType": vis.chart, "accessors": metrics,
                             "xAccessor": "x" if vis.x_time else None, "position": "top", "showGridlines": False}
    if vis.terms:
        layer["splitAccessor"] = "t0"
    return "lnsXY", {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
                     "preferredSeriesType": vis.chart, "layers": [layer]}


def lens_object(vis: Vis) -> dict[str, Any]:
    columns, order, buckets, metrics = _columns(vis)
    vis_type, visualization = _visualization(vis, buckets, metrics)
    description = vis.description
    if vis.may_be_empty:
        description = (description + " " if description else "") + f"Empty is expected: {vis.may_be_empty}."
    return {
        "id": vis.id,
        "type": "lens",
        "attributes": {
            "title": vis.title,
            "description": description,
            "visualizationType": vis_type,
            "state": {
                "datasourceStates": {"formBased": {"layers": {LAYER: {"columns": columns, "columnOrder": order,
                                                                      "incompleteColumns": {}}}}},
                "visualization": visualization,
                "query": {"query": "", "language": "kuery"},
                "filters": [],
            },
        },
        "references": [{"type": "index-pattern", "id": vis.view, "name": f"indexpattern-datasource-layer-{LAYER}"}],
    }


# -- the equivalent Elasticsearch aggregation ------------------------------------------------


def _metric_agg(metric: Metric) -> dict[str, Any] | None:
    if metric.op == "count":
        return None
    if metric.op == "percentile":
        return {"percentiles": {"field": metric.field, "percents": [metric.percentile]}}
    name = {"unique_count": "cardinality", "average": "avg"}.get(metric.op, metric.op)
    return {name: {"field": metric.field}}


def es_request(vis: Vis) -> dict[str, Any]:
    """The search body Lens sends for this visualization, in its essentials."""
    leaf: dict[str, Any] = {}
    for i, metric in enumerate(vis.metrics):
        agg = _metric_agg(metric)
        if metric.dsl is not None:
            leaf[f"m{i}"] = {"filter": metric.dsl, **({"aggs": {"value": agg}} if agg else {})}
        elif agg is not None:
            leaf[f"m{i}"] = agg
    aggs = leaf
    if vis.x_time:
        aggs = {"x": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 1},
                      **({"aggs": aggs} if aggs else {})}}
    for i, name in reversed(list(enumerate(vis.terms))):
        aggs = {f"t{i}": {"terms": {"field": name, "size": vis.size}, **({"aggs": aggs} if aggs else {})}}
    return {"size": 0, "aggs": aggs} if aggs else {"size": 0, "track_total_hits": True}


def fields_used(vis: Vis) -> set[str]:
    used = set(vis.terms) | {m.field for m in vis.metrics if m.field}
    if vis.x_time:
        used.add("@timestamp")
    for metric in vis.metrics:
        if metric.dsl:
            used |= _dsl_fields(metric.dsl)
    return used


def _dsl_fields(query: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for kind, body in query.items():
        if kind in ("term", "range", "terms") and isinstance(body, dict):
            found |= set(body)
    return found


# -- data views, searches, dashboards ----------------------------------------------------------


def data_view_objects() -> list[dict[str, Any]]:
    return [{"id": view_id, "type": "index-pattern",
             "attributes": {"title": pattern, "name": name, "timeFieldName": "@timestamp"}, "references": []}
            for view_id, (name, pattern) in DATA_VIEWS.items()]


def search_objects() -> list[dict[str, Any]]:
    objects = []
    for search_id, title, view, columns in SEARCHES:
        source = {"query": {"query": "", "language": "kuery"}, "filter": [],
                  "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
        objects.append({"id": search_id, "type": "search", "attributes": {
            "title": title, "description": "", "columns": columns, "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)}},
            "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                            "id": view}]})
    return objects


def _markdown_panel(text: str, index: int, y: int) -> dict[str, Any]:
    return {"type": "visualization", "panelIndex": f"p{index}", "gridData": {"x": 0, "y": y, "w": 48, "h": 8,
                                                                             "i": f"p{index}"},
            "embeddableConfig": {"savedVis": {"title": "", "description": "", "type": "markdown",
                                              "params": {"fontSize": 12, "openLinksInNewTab": False, "markdown": text},
                                              "uiState": {}, "data": {"aggs": [], "searchSource": {}}},
                                 "hidePanelTitles": True, "enhancements": {}}}


def dashboard_object(dashboard_id: str, title: str, visuals: list[Vis], help_text: str,
                     model_control: bool) -> dict[str, Any]:
    panels: list[dict[str, Any]] = [_markdown_panel(help_text, 0, 0)]
    references: list[dict[str, Any]] = []
    y = 8
    for n, vis in enumerate(visuals, 1):
        x = 0 if n % 2 else 24
        panels.append({"type": "lens", "panelIndex": f"p{n}", "panelRefName": f"panel_p{n}",
                       "gridData": {"x": x, "y": y, "w": 24, "h": 12, "i": f"p{n}"}, "embeddableConfig": {}})
        references.append({"name": f"panel_p{n}", "type": "lens", "id": vis.id})
        if x == 24:
            y += 12
    attributes: dict[str, Any] = {
        "title": title, "description": help_text.splitlines()[0].strip("* "),
        "panelsJSON": json.dumps(panels, sort_keys=True),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": True, "hidePanelTitles": False}),
        "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
    }
    if model_control:
        control = {"order": 0, "width": "large", "grow": True, "type": "optionsListControl",
                   "explicitInput": {"id": "model", "fieldName": "modelregistry.model.name", "title": "Model",
                                     "singleSelect": True}}
        attributes["controlGroupInput"] = {"controlStyle": "oneLine", "chainingSystem": "HIERARCHICAL",
                                           "ignoreParentSettingsJSON": json.dumps({"ignoreFilters": False}),
                                           "panelsJSON": json.dumps({"model": control})}
        references.append({"name": "controlGroup_model:optionsListDataView", "type": "index-pattern",
                           "id": "regwatch-events"})
    return {"id": dashboard_id, "type": "dashboard", "attributes": attributes, "references": references}


def all_visualizations() -> list[Vis]:
    return [vis for _, _, visuals, _, _ in DASHBOARDS for vis in visuals]


def all_objects() -> list[dict[str, Any]]:
    objects = data_view_objects() + search_objects() + [lens_object(v) for v in all_visualizations()]
    objects += [dashboard_object(*d) for d in DASHBOARDS]
    return objects


def render() -> str:
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in all_objects())


if __name__ == "__main__":
    NDJSON.write_text(render())
    print(f"wrote {NDJSON} ({len(all_objects())} objects)")  # noqa: T201 - a build script's one line
