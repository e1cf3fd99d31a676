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
from contract.traffic import AUDIT_TRAIL_KQL
from kibana.saved_object import saved_object
from kibana.specs import Metric, Vis

LAYER = "layer1"


# -- value formats (Lens ValueFormatConfig) -----------------------------------------------------

NUMBER = {"id": "number", "params": {"decimals": 0}}
PERCENT = {"id": "percent", "params": {"decimals": 1}}
BYTES = {"id": "bytes", "params": {"decimals": 1}}
# humanizePrecise: the largest unit in which the value is at least 1, "48.0 milliseconds"
NANOSECONDS = {"id": "duration", "params": {"fromUnit": "nanoseconds", "toUnit": "humanizePrecise", "decimals": 1}}
# an anomaly rule's series: a count or any metric of its rule's, read to one decimal; the score
# 0-100 as a whole number
SERIES_VALUE = {"id": "number", "params": {"decimals": 1}}
FIELD_FORMATS = {"event.duration": NANOSECONDS,  # ECS: event.duration is in nanoseconds
                 "modelregistry.anomaly.score": NUMBER,
                 **{f"modelregistry.anomaly.{name}": SERIES_VALUE for name in ("actual", "expected", "lower", "upper")}}


def value_format(metric: Metric) -> dict[str, Any]:
    """The format a person reads for a metric: whole counts, durations, percent, bytes."""
    if metric.op in ("count", "unique_count", "actions"):
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


def _part(kql: str | None, trail: bool) -> str:
    """The KQL of one source's records among those ``kql`` selects."""
    source = AUDIT_TRAIL_KQL if trail else f"not {AUDIT_TRAIL_KQL}"
    return source if not kql else f"({kql}) and {'' if trail else 'not '}({AUDIT_TRAIL_KQL})"


def _actions_text(kql: str | None) -> str:
    """The formula of the actions among the events ``kql`` selects: the larger of the audit
    trail's count and the other records' (contract.traffic: each action once)."""
    return (f"pick_max(count(kql='{_formula_text_value(_part(kql, True))}'), "
            f"count(kql='{_formula_text_value(_part(kql, False))}'))")


def _function(name: str, args: list[Any], text: str, formula: str) -> dict[str, Any]:
    """A tinymath function node as Lens's parser stores it (its text and where it stands)."""
    at = formula.index(text)
    return {"type": "function", "name": name, "args": args, "location": {"min": at, "max": at + len(text)},
            "text": text}


def _formula_columns(column_id: str, metric: Metric) -> dict[str, dict[str, Any]]:
    """A Lens formula column and the helper columns Lens stores with it.

    What Lens's ``insertOrReplaceFormulaColumn`` (formula/parse.ts) writes for a formula: one count
    per function (``<id>X0``, ``<id>X1``, ...; the formula's filter ``of`` merged into each as
    ``(<of>) AND (<kql>)``, formula/util.ts ``mergeWithGlobalFilters``; ``emptyAsNull: false`` as
    for every count used in math, count.tsx), then the math column whose ``tinymathAst`` combines
    them. Lens renders from these columns (formula.tsx ``toExpression`` reads the math column).
    ``pick_max`` is tinymath's (kbn-lens-formula-docs ``src/math``: "Finds the maximum value
    between two numbers").

    ``actions``: ``pick_max(count(kql='<trail>'), count(kql='<others>'))``; ``ratio``: the
    actions ``kql`` selects over all actions, ``pick_max(...) / pick_max(...)``.
    """
    if metric.op == "ratio":
        assert metric.kql and metric.of, "a ratio needs kql (the numerator) and of (the whole)"
        part, whole = _actions_text(metric.kql), _actions_text(None)
        formula = f"{part} / {whole}"
        filters = [_part(metric.kql, True), _part(metric.kql, False), _part(None, True), _part(None, False)]
    else:
        formula = part = _actions_text(metric.kql)
        whole = ""
        filters = [_part(metric.kql, True), _part(metric.kql, False)]
    ids = [f"{column_id}X{i}" for i in range(len(filters) + 1)]
    label = f"Part of {metric.label}"
    columns: dict[str, dict[str, Any]] = {}
    for helper, kql in zip(ids, filters, strict=False):
        columns[helper] = _count(label, f"({metric.of}) AND ({kql})" if metric.of else kql, {"emptyAsNull": False})
    if metric.op == "ratio":
        ast = _function("divide", [_function("pick_max", ids[0:2], part, formula),
                                   _function("pick_max", ids[2:4], whole, formula)], formula, formula)
    else:
        ast = _function("pick_max", ids[0:2], formula, formula)
    formula_column: dict[str, Any] = {
        "label": metric.label, "customLabel": True, "dataType": "number", "isBucketed": False,
        "scale": "ratio", "operationType": "formula",
        "params": {"formula": formula, "isFormulaBroken": False, "format": value_format(metric)},
        "references": [ids[-1]]}
    if metric.of:
        formula_column["filter"] = {"query": metric.of, "language": "kuery"}
    math = {"label": label, "customLabel": True, "dataType": "number", "isBucketed": False, "scale": "ratio",
            "operationType": "math", "references": ids[:-1], "params": {"tinymathAst": ast}}
    return {column_id: formula_column, **columns, ids[-1]: math}


# Lens ranks terms by a column only where Elasticsearch can sort by it (terms/helpers.ts
# ``isSortableByColumn``: not a formula); a panel of actions ranks by the count of its documents
# instead, as Lens's "Rank by: Custom" does (the data plugin's _terms_order_helper.ts sends a count
# order agg as ``_count``).
RANK_BY_DOCUMENTS = {"label": "Count of records", "dataType": "number", "isBucketed": False, "scale": "ratio",
                     "operationType": "count", "sourceField": "___records___", "params": {"emptyAsNull": True}}


def _metric_columns(column_id: str, metric: Metric) -> dict[str, dict[str, Any]]:
    if metric.op in ("ratio", "actions"):
        return _formula_columns(column_id, metric)
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
        ranked = vis.metrics[0].op in ("ratio", "actions")
        order: dict[str, Any] = ({"orderBy": {"type": "custom"}, "orderAgg": RANK_BY_DOCUMENTS} if ranked
                                 else {"orderBy": {"type": "column", "columnId": metrics[0]}})
        columns[column_id] = {"label": f"Top {vis.size} {name}", "dataType": kibana_type(name),
                              "operationType": "terms",
                              "sourceField": name, "isBucketed": True, "scale": "ordinal",
                              "params": {"size": vis.size, **order,
                                         "orderDirection": "desc", "otherBucket": True, "missingBucket": False}}
        buckets.append(column_id)
    if vis.x_time:
        columns["x"] = {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
                        "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
                        "params": {"interval": vis.interval, "includeEmptyRows": True, "dropPartials": False}}
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

