"""The saved objects regwatch ships: data views, Lens visualizations, dashboards, saved searches.

Each visualization is a small spec (data, at the top of this file) from which the Lens saved
object Kibana imports is built; the tests derive each panel's Elasticsearch request from that
Lens state (``kibana.lens_query``). ``python -m kibana.objects`` writes ``kibana/regwatch.ndjson``;
a test checks the committed file equals this output.

The objects target Kibana 8.10 and later (8.19 and 9.x included): 8.10 is the first Lens with a
duration value format (``duration`` in ``lens/common/expressions/defs/format_column/
supported_formats.ts``, elastic/kibana#162246); an older Lens reads an unknown format id as
the field formatter's defaults (seconds, humanized), which would show 48 ms as "a year". Each
object carries the version fields a Kibana 8.9+ export would give it (``VERSIONS``), so an import
runs none of the legacy migrations of its type, and ``managed: false``.

Every metric column carries the value format a person reads (``value_format``): counts as whole
numbers, ``event.duration`` (nanoseconds, ECS) as a duration, ratios as percent, ``*.bytes`` as
bytes. The parameter names are Lens's own (``ValueFormatConfig`` in ``lens/public/datasources/
form_based/operations/definitions/column_types.ts``; the units of ``fromUnit``/``toUnit`` are the
field formatter's, ``field_formats/common/constants/duration_formats.ts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import streams
from contract.fields import kibana_type
from contract.views import DATA_VIEWS

NDJSON = Path(__file__).with_name("regwatch.ndjson")

# -- the version fields ------------------------------------------------------------------------

# What a Kibana 8.9+ export writes on objects of each type. On import, Kibana runs every legacy
# migration of the type newer than ``typeMigrationVersion`` (all of them when the field is
# missing: collect_saved_objects.ts sets it to ''), and the core transforms newer than
# ``coreMigrationVersion`` (document_migrator/pipelines/upgrade_pipeline.ts). The values are the
# newest legacy migration of each type, read in Kibana's source:
#   index-pattern  8.0.0  migrations to 7.11.0 (data_views/server/saved_objects/index_pattern_migrations.ts),
#                         then the multi-namespace conversion at 8.0.0 (data_views.ts)
#   search         8.0.0  migrations to 7.9.3 (saved_search/server/saved_objects/search_migrations.ts;
#                         the search-source and filter maps are empty), conversion at 8.0.0 (search.ts)
#   lens           8.9.0  lensMigrations to 8.9.0 (lens/server/migrations/saved_object_migrations.ts)
#   dashboard      8.9.0  dashboard migrations to 7.17.3 merged with the embeddables' (Lens to 8.9.0)
#                         (dashboard/server/dashboard_saved_object/migrations/dashboard_saved_object_migrations.ts)
#   core           8.8.0  the one core transform (document_migrator/migrations/index.ts)
# Model versions (10.x.y) that a newer Kibana defines still apply, as they do to its own exports.
CORE_MIGRATION_VERSION = "8.8.0"
VERSIONS = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}


def saved_object(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, Any]]) -> dict[str, Any]:
    """One saved object as Kibana exports it: content, references and the version fields."""
    return {"id": id_, "type": type_, "attributes": attributes, "references": references,
            "coreMigrationVersion": CORE_MIGRATION_VERSION, "typeMigrationVersion": VERSIONS[type_],
            "managed": False}


# -- data views --------------------------------------------------------------------------------

# -- visualization specs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric column. ``op`` is a Lens operation, or ``ratio``: a Lens formula
    ``count(kql='<kql>') / count()`` over the events ``of`` selects (the formula's "filter by")."""

    op: str  # count | percentile | unique_count | average | max | ratio
    field: str | None = None
    label: str = ""
    percentile: int | None = None
    kql: str | None = None  # a filter on this metric only (Lens "filter by"); ratio: the numerator
    of: str | None = None  # ratio: the KQL selecting the denominator (and the numerator within it)


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

# What the registry answers: the calls of the rule ``registry-error-ratio`` (rules/builtin/
# registry.yaml: kinds registration, retrieval, version, error; numerator event.outcome:failure),
# so the dashboard's error rate and the alert's are the same number. Access-log lines and alerts
# are not calls.
CALL_KINDS = ("registration", "retrieval", "version", "error")
CALLS = " or ".join(f'data_stream.dataset : "{streams.dataset(kind)}"' for kind in CALL_KINDS)
FAILED = 'event.outcome : "failure"'

OVERVIEW = [
    Vis("regwatch-activity-over-time", "Registrations, retrievals and version changes over time", "bar_stacked",
        "regwatch-events", (COUNT,), x_time=True, terms=("data_stream.dataset",), size=7,
        description="Events per kind per interval: the registry's pulse."),
    Vis("regwatch-retrievals-by-model", "Retrievals by model (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name",)),
    Vis("regwatch-retrievals-by-version", "Retrievals by model version (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name", "modelregistry.model.version")),
    Vis("regwatch-errors-4xx-5xx", "Errors over time, 4xx and 5xx apart", "bar_stacked", "regwatch-error",
        (Metric("count", label="4xx", kql="http.response.status_code >= 400 and http.response.status_code < 500"),
         Metric("count", label="5xx", kql="http.response.status_code >= 500")),
        x_time=True),
    Vis("regwatch-error-rate", "Error rate", "metric", "regwatch-events",
        (Metric("ratio", label="Failed calls / all calls", kql=FAILED, of=CALLS),),
        description="Failed registry calls over all registry calls (registrations, retrievals, version changes, "
                    "errors), as the registry-error-ratio rule counts them."),
    Vis("regwatch-latency-percentiles", "Response time p50 / p95 / p99", "line", "regwatch-events",
        (Metric("percentile", "event.duration", "p50", 50), Metric("percentile", "event.duration", "p95", 95),
         Metric("percentile", "event.duration", "p99", 99)), x_time=True),
    Vis("regwatch-availability-probes", "Availability (health probe)", "line", "regwatch-availability",
        (Metric("count", label="Probes up", kql="modelregistry.probe.up : true"),
         Metric("count", label="Probes down", kql="modelregistry.probe.up : false")), x_time=True,
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
        (Metric("count", label="Firing", kql='event.action : "firing"'),),
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
* **Error rate**: failed registry calls over all registry calls (registrations, retrievals,
  version changes, errors) in the time range: the number the `registry-error-ratio` rule watches.
* **Response time p50 / p95 / p99**: from `event.duration` where the log has timings.
* **Availability**: results of the health probe (`metrics-modelregistry.availability-*`); empty
  until a probe runs.
* **Requests by user / by source**: who is calling.
* **Latest errors**: the failing operations, with status and model.

Dead-letters (lines that could not be parsed) are in the saved search *regwatch: dead-letters*.
"""

DASHBOARDS = [
    ("regwatch-dashboard-overview", "Model Registry Overview", OVERVIEW, OVERVIEW_HELP, False),
    ("regwatch-dashboard-model", "Model activity", MODEL_ACTIVITY,
     ("Pick a model with the control above: its versions, aliases, stages, who downloads it, and how fast "
      "its versions change."), True),
    ("regwatch-dashboard-alerts", "Alerts", ALERTS,
     "Alert history from `logs-modelregistry.alert-*`, written by the rule runner.", False),
]


# -- Lens saved objects ------------------------------------------------------------------------

LAYER = "layer1"


# -- value formats (Lens ValueFormatConfig) -----------------------------------------------------

NUMBER = {"id": "number", "params": {"decimals": 0}}
PERCENT = {"id": "percent", "params": {"decimals": 1}}
BYTES = {"id": "bytes", "params": {"decimals": 1}}
# humanizePrecise: the largest unit in which the value is at least 1, "48.0 milliseconds"
NANOSECONDS = {"id": "duration", "params": {"fromUnit": "nanoseconds", "toUnit": "humanizePrecise", "decimals": 1}}
FIELD_FORMATS = {"event.duration": NANOSECONDS}  # ECS: event.duration is in nanoseconds


def value_format(metric: Metric) -> dict[str, Any]:
    """The format a person reads for a metric: whole counts, durations, percent, bytes."""
    if metric.op in ("count", "unique_count"):
        return NUMBER
    if metric.op == "ratio":
        return PERCENT
    if metric.field in FIELD_FORMATS:
        return FIELD_FORMATS[metric.field]
    if metric.field and metric.field.endswith(".bytes"):
        return BYTES
    if metric.field and metric.field.endswith(".pct"):
        return PERCENT
    return {"id": "number", "params": {"decimals": 2}}


def _count(label: str, kql: str | None, params: dict[str, Any]) -> dict[str, Any]:
    column: dict[str, Any] = {"label": label, "customLabel": True, "dataType": "number", "isBucketed": False,
                              "scale": "ratio", "operationType": "count", "sourceField": "___records___",
                              "params": params}
    if kql:
        column["filter"] = {"query": kql, "language": "kuery"}
    return column


def _formula_text_value(kql: str) -> str:
    """A KQL string as a formula's quoted argument (lens formula/generate.ts escapes \\ and ')."""
    return kql.replace("\\", "\\\\").replace("'", "\\'")


def _ratio_columns(column_id: str, metric: Metric) -> dict[str, dict[str, Any]]:
    """A Lens formula column and the helper columns Lens stores with it.

    What Lens's ``insertOrReplaceFormulaColumn`` (formula/parse.ts) writes for
    ``count(kql='<kql>') / count()`` with the formula filtered by ``of``: one count per function
    (``<id>X0``, ``<id>X1``; the formula's filter merged into each as ``(<of>) AND (<kql>)``,
    formula/util.ts ``mergeWithGlobalFilters``; ``emptyAsNull: false`` as for every count used in
    math, count.tsx), then the math column (``<id>X2``) whose ``tinymathAst`` divides them. Lens
    renders from these columns (formula.tsx ``toExpression`` reads the math column).
    """
    assert metric.kql and metric.of, "a ratio needs kql (the numerator) and of (the whole)"
    formula = f"count(kql='{_formula_text_value(metric.kql)}') / count()"
    part = f"Part of {metric.label}"
    numerator, whole, math = (f"{column_id}X{i}" for i in range(3))
    return {
        column_id: {"label": metric.label, "customLabel": True, "dataType": "number", "isBucketed": False,
                    "scale": "ratio", "operationType": "formula",
                    "params": {"formula": formula, "isFormulaBroken": False, "format": value_format(metric)},
                    "filter": {"query": metric.of, "language": "kuery"}, "references": [math]},
        numerator: _count(part, f"({metric.of}) AND ({metric.kql})", {"emptyAsNull": False}),
        whole: _count(part, metric.of, {"emptyAsNull": False}),
        math: {"label": part, "customLabel": True, "dataType": "number", "isBucketed": False, "scale": "ratio",
               "operationType": "math", "references": [numerator, whole],
               "params": {"tinymathAst": {"type": "function", "name": "divide", "args": [numerator, whole],
                                          "location": {"min": 0, "max": len(formula)}, "text": formula}}},
    }


def _metric_columns(column_id: str, metric: Metric) -> dict[str, dict[str, Any]]:
    if metric.op == "ratio":
        return _ratio_columns(column_id, metric)
    column: dict[str, Any] = {"label": metric.label or metric.op, "customLabel": bool(metric.label),
                              "dataType": "number", "isBucketed": False, "scale": "ratio"}
    if metric.op == "count":
        column.update(operationType="count", sourceField="___records___", params={"emptyAsNull": True})
    elif metric.op == "percentile":
        column.update(operationType="percentile", sourceField=metric.field, params={"percentile": metric.percentile})
    else:
        column.update(operationType=metric.op, sourceField=metric.field, params={"emptyAsNull": True})
    column["params"]["format"] = value_format(metric)
    if metric.kql:
        column["filter"] = {"query": metric.kql, "language": "kuery"}
    return {column_id: column}


def _columns(vis: Vis) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """Lens columns, their order, the bucket column ids and the metric column ids."""
    columns: dict[str, Any] = {}
    buckets: list[str] = []
    metrics = [f"m{i}" for i in range(len(vis.metrics))]
    for i, name in enumerate(vis.terms):
        column_id = f"t{i}"
        columns[column_id] = {"label": f"Top {vis.size} {name}", "dataType": kibana_type(name),
                              "operationType": "terms",
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
        columns.update(_metric_columns(column_id, metric))
    # a formula's, after it (as Lens orders them)
    helpers = [c for c in columns if c not in buckets and c not in metrics]
    return columns, buckets + metrics + helpers, buckets, metrics


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
    return saved_object("lens", vis.id, {
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
        }, [{"type": "index-pattern", "id": vis.view, "name": f"indexpattern-datasource-layer-{LAYER}"}])


# -- data views, searches, dashboards ----------------------------------------------------------


def data_view_objects() -> list[dict[str, Any]]:
    return [saved_object("index-pattern", view_id, {"title": pattern, "name": name, "timeFieldName": "@timestamp"}, [])
            for view_id, (name, pattern) in DATA_VIEWS.items()]


def search_objects() -> list[dict[str, Any]]:
    objects = []
    for search_id, title, view, columns in SEARCHES:
        source = {"query": {"query": "", "language": "kuery"}, "filter": [],
                  "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
        objects.append(saved_object("search", search_id, {
            "title": title, "description": "", "columns": columns, "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)}},
            [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": view}]))
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
        # the name Kibana's own extract writes: "<panelIndex>:panel_<panelIndex>"
        # (dashboard_saved_object/migrations/migrate_extract_panel_references/dashboard_container_references.ts)
        references.append({"name": f"p{n}:panel_p{n}", "type": "lens", "id": vis.id})
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
    return saved_object("dashboard", dashboard_id, attributes, references)


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
    print(f"wrote {NDJSON} ({len(all_objects())} objects)")
