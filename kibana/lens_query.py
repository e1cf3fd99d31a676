"""The Elasticsearch request a Lens visualization sends, read from the saved object's own state.

Lens turns a form-based layer into one ``esaggs`` request: bucket columns nest in ``columnOrder``
order, metric columns are the leaves, a column's ``filter`` wraps its metric in a ``filter``
aggregation, the state's query narrows the whole search (``x-pack/platform/plugins/shared/lens/
public/datasources/form_based/to_expression.ts`` and each operation's ``toEsAggsFn`` under
``.../form_based/operations/definitions/``). This module makes the same request from the same
state, so a panel and the query that tests it cannot drift: change the panel and the test query
changes with it.

A formula column sends nothing itself: Lens stores the columns it parses the formula into (one
per function, then a ``math`` column over them; ``.../definitions/formula/parse.ts``), sends the
function columns like any other and computes the ``math`` column from their values
(``formula/math.tsx`` ``toExpression``: a ``mathColumn`` whose errors, such as 0/0, are null).
``metric_values`` does the same with the response of a layer without buckets, so a test reads
the number the panel shows.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contract.kql import compile_kql

# A date histogram with interval "auto" has no fixed width until a time range is picked; the
# test asks for minutes, fine enough for an hour of demo data.
AUTO_INTERVAL = "1m"
_METRIC_AGGS = {"average": "avg", "unique_count": "cardinality", "max": "max", "min": "min", "sum": "sum"}


class LensQueryError(ValueError):
    """A column this translation does not know: the test would no longer say what the panel sends."""


@dataclass(frozen=True)
class LensRequest:
    index: str  # the data view's title (an index pattern)
    body: dict[str, Any]


def _query(state_query: dict[str, Any]) -> dict[str, Any] | None:
    text = state_query.get("query", "")
    if not text:
        return None
    if state_query.get("language") != "kuery":
        raise LensQueryError(f"query language {state_query.get('language')!r}")
    return compile_kql(text)


# Columns computed from other columns after the search: they add no aggregation.
CALCULATED = {"formula", "math"}


def _metric(column_id: str, column: dict[str, Any]) -> dict[str, Any] | None:
    op = column["operationType"]
    if op in CALCULATED:
        return None
    if op == "count":
        agg = None
    elif op == "percentile":
        agg = {"percentiles": {"field": column["sourceField"], "percents": [column["params"]["percentile"]]}}
    elif op in _METRIC_AGGS:
        agg = {_METRIC_AGGS[op]: {"field": column["sourceField"]}}
    else:
        raise LensQueryError(f"{column_id}: operation {op!r}")
    if "filter" in column:
        narrowed = _query(column["filter"]) or {"match_all": {}}
        return {"filter": narrowed, **({"aggs": {"value": agg}} if agg else {})}
    return agg


def _order(column: dict[str, Any], columns: dict[str, Any]) -> dict[str, str]:
    params = column["params"]
    direction = params["orderDirection"]
    order_by = params["orderBy"]
    if order_by["type"] == "alphabetical":
        return {"_key": direction}
    if order_by["type"] == "custom":  # "Rank by: Custom": the data plugin's _terms_order_helper.ts
        if params.get("orderAgg", {}).get("operationType") != "count":
            raise LensQueryError(f"terms ranked by a custom {params.get('orderAgg', {}).get('operationType')!r}")
        return {"_count": direction}
    if order_by["type"] != "column":
        raise LensQueryError(f"terms order {order_by['type']!r}")
    target_id = order_by["columnId"]
    target = columns[target_id]
    op = target["operationType"]
    if op in CALCULATED:
        raise LensQueryError(f"terms ordered by the {op} column {target_id!r}")
    if op == "count":
        return {"_count" if "filter" not in target else f"{target_id}>_count": direction}
    if op == "percentile":
        return {f"{target_id}[{float(target['params']['percentile'])}]": direction}
    return {target_id if "filter" not in target else f"{target_id}>value": direction}


def _bucket(column_id: str, column: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    op = column["operationType"]
    params = column["params"]
    if op == "terms":
        terms: dict[str, Any] = {"field": column["sourceField"], "size": params["size"],
                                 "order": _order(column, columns)}
        if params.get("otherBucket") and params.get("missingBucket"):
            terms["missing_bucket"] = True
        return {"terms": terms}
    if op == "date_histogram":
        interval = params["interval"]
        histogram = {"field": column["sourceField"], "min_doc_count": 0 if params.get("includeEmptyRows") else 1}
        histogram["fixed_interval"] = AUTO_INTERVAL if interval == "auto" else interval
        return {"date_histogram": histogram}
    raise LensQueryError(f"{column_id}: bucket operation {op!r}")


def lens_request(lens: dict[str, Any], data_views: dict[str, dict[str, Any]]) -> LensRequest:
    """The search of a Lens saved object's (single) layer over the data view it references."""
    state = lens["attributes"]["state"]
    layers = state["datasourceStates"]["formBased"]["layers"]
    if len(layers) != 1:
        raise LensQueryError(f"{len(layers)} layers")
    ((layer_id, layer),) = layers.items()
    reference = next(r for r in lens["references"] if r["name"] == f"indexpattern-datasource-layer-{layer_id}")
    index = data_views[reference["id"]]["attributes"]["title"]
    columns = layer["columns"]
    order = layer["columnOrder"]
    buckets = [c for c in order if columns[c]["isBucketed"]]
    leaves = {c: agg for c in order if not columns[c]["isBucketed"] if (agg := _metric(c, columns[c])) is not None}
    aggs: dict[str, Any] = leaves
    for column_id in reversed(buckets):
        aggs = {column_id: {**_bucket(column_id, columns[column_id], columns), **({"aggs": aggs} if aggs else {})}}
    body: dict[str, Any] = {"size": 0, "track_total_hits": True}
    if aggs:
        body["aggs"] = aggs
    if state.get("filters"):
        raise LensQueryError("pinned filters")
    if (query := _query(state.get("query", {}))) is not None:
        body["query"] = {"bool": {"filter": [query]}}
    return LensRequest(index, body)


# tinymath functions a math column may use here (Lens's tinymath ``divide``, ``multiply``, ...)
_MATH: dict[str, Callable[[float, float], float]] = {"add": operator.add, "subtract": operator.sub,
                                                      "multiply": operator.mul, "divide": operator.truediv,
                                                      "pick_max": max, "pick_min": min}


def metric_values(lens: dict[str, Any], response: dict[str, Any]) -> dict[str, float | None]:
    """The value of every column of a layer without buckets, from the response to its request:
    counts and metrics as Lens reads them, math and formula columns computed as Lens computes them."""
    columns, order = _layer(lens)
    if any(c["isBucketed"] for c in columns.values()):
        raise LensQueryError("metric_values reads layers without buckets")
    return _values(columns, order, response.get("aggregations", {}), response["hits"]["total"]["value"])


Row = tuple[tuple[Any, ...], dict[str, float | None]]


def bucket_values(lens: dict[str, Any], response: dict[str, Any]) -> list[Row]:
    """Each row of a layer with buckets: the keys of its bucket columns (outermost first) and the
    value of every metric column in it, computed as :func:`metric_values` computes them."""
    columns, order = _layer(lens)
    buckets = [c for c in order if columns[c]["isBucketed"]]
    rows: list[Row] = []

    def walk(aggs: dict[str, Any], depth: int, keys: tuple[Any, ...]) -> None:
        for bucket in aggs[buckets[depth]]["buckets"]:
            key = (*keys, bucket.get("key_as_string", bucket["key"]))
            if depth + 1 < len(buckets):
                walk(bucket, depth + 1, key)
            else:
                values = _values(columns, order, bucket, bucket["doc_count"])
                rows.append((key, {c: v for c, v in values.items() if c not in buckets}))

    walk(response.get("aggregations", {}), 0, ())
    return rows


def _layer(lens: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    ((_, layer),) = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].items()
    return layer["columns"], layer["columnOrder"]


def _values(columns: dict[str, Any], order: list[str], aggs: dict[str, Any], total: int) -> dict[str, float | None]:
    """The metric columns' values in one bucket (``aggs``: its sub-aggregations; ``total``: its count)."""
    values: dict[str, float | None] = {}

    def leaf(column_id: str, column: dict[str, Any]) -> float | None:
        op = column["operationType"]
        if op == "count":
            count = aggs[column_id]["doc_count"] if "filter" in column else total
            return None if count == 0 and column.get("params", {}).get("emptyAsNull") else float(count)
        agg = aggs[column_id]["value"] if "filter" in column else aggs[column_id]
        if op == "percentile":
            ((_, value),) = agg["values"].items()
            return value
        return agg["value"]

    def evaluate(node: Any) -> float | None:
        if isinstance(node, (int, float)):
            return float(node)
        if isinstance(node, str):
            return value(node)
        if node.get("type") != "function" or node.get("name") not in _MATH:
            raise LensQueryError(f"math node {node!r}")
        args = [evaluate(a) for a in node["args"]]
        if any(a is None for a in args):
            return None
        result = args[0]
        try:
            for arg in args[1:]:
                result = _MATH[node["name"]](result, arg)  # type: ignore[arg-type]
        except ZeroDivisionError:
            return None  # mathColumn onError: null
        return result

    def value(column_id: str) -> float | None:
        if column_id not in values:
            column = columns[column_id]
            op = column["operationType"]
            if column["isBucketed"]:
                values[column_id] = None
            elif op == "formula":
                values[column_id] = value(column["references"][0]) if column["references"] else None
            elif op == "math":
                values[column_id] = evaluate(column["params"]["tinymathAst"])
            else:
                values[column_id] = leaf(column_id, column)
        return values[column_id]

    return {column_id: value(column_id) for column_id in order}
