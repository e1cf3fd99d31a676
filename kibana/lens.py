"""A visualization spec as the Lens saved object Kibana imports: columns, value formats, chart.

The objects target Kibana 8.10 and later (8.19 and 9.x included): 8.10 is the first Lens with a
duration value format (``duration`` in ``lens/common/expressions/defs/format_column/
supported_formats.ts``, elastic/kibana#162246); an older Lens reads an unknown format id as
the field formatter's defaults (seconds, humanized), which would show 48 ms as "a year".

Every metric column carries the value format a person reads (``value_format``): counts as whole
numbers, ``event.duration`` (nanoseconds, ECS) as a duration, ratios as percent, ``*.bytes`` as
bytes. The parameter names are Lens's own (``ValueFormatConfig`` in ``lens/public/datasources/
form_based/operations/definitions/column_types.ts``; the units of ``fromUnit``/``toUnit`` are the
field formatter's, ``field_formats/common/constants/duration_formats.ts``).
"""

from __future__ import annotations

from typing import Any

from contract.fields import kibana_type
from kibana.saved_object import saved_object
from kibana.specs import Metric, Vis

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
                "query": {"query": vis.query, "language": "kuery"},
                "filters": [],
            },
        }, [{"type": "index-pattern", "id": vis.view, "name": f"indexpattern-datasource-layer-{LAYER}"}])

