"""The rules Grafana's own code applies to an imported dashboard, each naming the file it comes from.

No Grafana runs here (no registry we reach carries it), so the dashboard is held to its source:

* ``pkg/services/dashboardimport/utils/dash_template_evaluator.go``: every ``__inputs`` entry has a
  name and a type, and import replaces ``${NAME}`` only for declared inputs: a ``${...}`` that is
  not declared stays literally in the dashboard (a data source uid that does not exist).
* ``pkg/services/provisioning/dashboards/file_reader.go``: file provisioning saves the JSON as it
  is, no input is replaced; only a dashboard variable (``templating.list``) is resolved at view
  time (``public/app/features/plugins/datasource_srv.ts``, ``getInstanceSettings`` of a ``$`` uid).
  So every ``${...}`` must name a dashboard variable, or a provisioned dashboard breaks.
* ``apps/dashboard/pkg/migration/schemaversion/migrations.go``: ``schemaVersion`` is at least
  ``MIN_VERSION`` (21), else the backend refuses to migrate the dashboard.
* ``public/app/features/dashboard/state/DashboardMigrator.ts``: Grafana 10.0's newest schema is 38
  (39 came in 10.3, grafana/grafana#76801); a dashboard at 38 runs no migration on 10.0, and the
  newer steps below must find no work.
* ``schemaversion/v39.go``: a ``timeSeriesTable`` transformation's ``refIdToStat`` is rewritten.
* ``schemaversion/v40.go`` (``refresh`` made a string), ``v41.go`` (``timepicker.time_options``
  removed), ``v42.go`` (``custom.hideFrom`` overrides with ``viz`` get ``tooltip``): for our
  dashboard to come out of the newer back end unchanged, none of them may find work.
* ``public/app/core/constants.ts``: the grid has ``GRID_COLUMN_COUNT`` = 24 columns.
* Every query of a panel has a ``refId`` unique in the panel (the query runner keys results by it),
  and panel ids are unique (``DashboardModel`` keys panels by id).
"""

from __future__ import annotations

import re
from typing import Any

MIN_VERSION = 21
FRONTEND_SCHEMA_VERSION = 38  # Grafana 10.0, the oldest release regwatch supports
GRID_COLUMN_COUNT = 24
CORE_PANELS = {"timeseries", "stat", "table", "bargauge", "gauge", "text", "row", "piechart", "barchart"}
_INPUT = re.compile(r"\$\{(.+?)\}")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() if key != "__inputs" for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def problems(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []
    inputs = dashboard.get("__inputs", [])
    declared = set()
    for entry in inputs:
        if not entry.get("name") or not entry.get("type"):
            found.append(f"__inputs entry without name or type: {entry}")
        declared.add(entry.get("name"))
    variables = {v.get("name") for v in (dashboard.get("templating") or {}).get("list", [])}
    for text in _strings(dashboard):
        for name in _INPUT.findall(text):
            if name in variables or name.startswith("__"):
                continue
            if name in declared:
                found.append(f"${{{name}}} is an import input: file provisioning leaves it as it is "
                             "(use a dashboard variable)")
            else:
                found.append(f"${{{name}}} is not declared in __inputs: import leaves it as it is")
    for variable in (dashboard.get("templating") or {}).get("list", []):
        if variable.get("type") == "datasource" and not variable.get("query"):
            found.append(f"data source variable {variable.get('name')!r} names no plugin type (query)")
    version = dashboard.get("schemaVersion")
    if not isinstance(version, int) or not MIN_VERSION <= version <= FRONTEND_SCHEMA_VERSION:
        found.append(f"schemaVersion {version!r} is outside {MIN_VERSION}..{FRONTEND_SCHEMA_VERSION}")
    if not isinstance(dashboard.get("refresh"), str):
        found.append("refresh is not a string (v40 would rewrite it to '')")
    for panel in dashboard.get("panels", []):
        for transformation in panel.get("transformations") or []:
            if transformation.get("id") == "timeSeriesTable":
                found.append(f"panel {panel.get('title')!r}: timeSeriesTable transformation (v39 would rewrite it)")
    if "time_options" in (dashboard.get("timepicker") or {}):
        found.append("timepicker.time_options (v41 would remove it)")
    ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    for panel in dashboard.get("panels", []):
        title = panel.get("title", panel.get("id"))
        if panel.get("type") not in CORE_PANELS:
            found.append(f"panel {title!r}: type {panel.get('type')!r} is not a core panel")
        if panel.get("id") in ids:
            found.append(f"panel {title!r}: id {panel.get('id')} used twice")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos") or {}
        x, y, w, h = (grid.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(v, int) for v in (x, y, w, h)) or w < 1 or h < 1 or x < 0 or y < 0:
            found.append(f"panel {title!r}: gridPos {grid} is not four non-negative integers with w, h >= 1")
            continue
        if x + w > GRID_COLUMN_COUNT:
            found.append(f"panel {title!r}: x + w = {x + w} > {GRID_COLUMN_COUNT} columns")
        overlap = {(col, row) for col in range(x, x + w) for row in range(y, y + h)} & cells
        if overlap:
            found.append(f"panel {title!r}: overlaps another panel at {sorted(overlap)[0]}")
        cells |= {(col, row) for col in range(x, x + w) for row in range(y, y + h)}
        ref_ids = [t.get("refId") for t in panel.get("targets", [])]
        if len(set(ref_ids)) != len(ref_ids) or None in ref_ids:
            found.append(f"panel {title!r}: refIds {ref_ids} are not unique")
        for override in (panel.get("fieldConfig") or {}).get("overrides", []):
            for prop in override.get("properties", []):
                value = prop.get("value")
                if prop.get("id") == "custom.hideFrom" and isinstance(value, dict) and value.get("viz") \
                        and not value.get("tooltip"):
                    found.append(f"panel {title!r}: hideFrom.viz without tooltip (v42 would change it)")
    return found


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every (panel title, refId, PromQL) of the dashboard."""
    return [(panel["title"], target["refId"], target["expr"]) for panel in dashboard.get("panels", [])
            for target in panel.get("targets", [])]


def grafana_variables(expr: str, rate_interval: str = "1m", range_: str = "1h") -> str:
    """The expression as Grafana sends it, with all targets selected: ``$__rate_interval``,
    ``$__range`` and the ``$target`` variable ("All" = ``.*``) filled in."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
            .replace('"$target"', '".*"'))
