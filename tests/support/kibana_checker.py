"""Kibana's own rules for imported saved objects, applied without Kibana.

Kibana cannot run here. Each rule below restates one check that Kibana's code applies on
``POST /api/saved_objects/_import`` or when it renders an object, and names the file it comes
from (paths in elastic/kibana's main branch; 8.19 holds the same code under the same names).
``check(objects)`` returns every broken rule; the stand-in Kibana of the CLI tests refuses an
import with the same answer Kibana would give.

Rules that decide whether the import as a whole fails (a migration that throws fails Kibana's
bulk create, HTTP 500) are marked ``fatal``; the others fail the object they are about.

Two rules are about what a panel shows rather than whether it imports, because Kibana accepts
both mistakes silently and renders a wrong number:

* ``lens-value-format``: a column's value format (``params.format``, Lens's ``ValueFormatConfig``)
  must be one Lens knows, with only the parameters its editor writes and the values the field
  formatter reads, in a Lens version the objects target. Sources: the format ids and which
  parameters each takes, ``x-pack/platform/plugins/shared/lens/public/datasources/form_based/
  dimension_panel/format_selector.tsx`` (``supportedFormats``, decimals 0..15) and
  ``.../operations/definitions/column_types.ts`` (``ValueFormatConfig``); how they reach the
  formatter, ``x-pack/platform/plugins/shared/lens/common/expressions/defs/format_column/
  supported_formats.ts`` (duration: ``fromUnit`` -> ``inputFormat``, ``toUnit`` ->
  ``outputFormat``, ``decimals`` -> ``outputPrecision``, ``compact`` -> ``useShortSuffix``) and
  ``.../impl/format_column/format_column_fn.ts`` (a format on a non-number column is dropped; an
  unknown id is passed on without parameters); the duration units,
  ``src/platform/plugins/shared/field_formats/common/constants/duration_formats.ts`` (input
  ``kind``s, output ``method``s) and ``.../common/converters/duration.ts``. The duration format
  arrived in Lens 8.10 (elastic/kibana#162246); before it, ``format_column_fn.ts`` passed
  ``{id: 'duration'}`` without parameters, which the formatter reads as seconds, humanized.
* ``lens-formula``: a formula column's stored helper columns must be the ones Lens derives from
  its text (``.../operations/definitions/formula/parse.ts`` ``insertOrReplaceFormulaColumn``,
  ``formula/util.ts`` ``mergeWithGlobalFilters``, ``count.tsx`` ``buildColumn``); Lens renders
  from the helpers (``formula/formula.tsx`` and ``formula/math.tsx`` ``toExpression``), while its
  editor shows the text, so the two must say the same. The formula grammar checked here is a
  subset of tinymath's (``src/platform/packages/private/kbn-tinymath/grammar/grammar.peggy``):
  numbers, ``+ - * /``, parentheses and ``count(...)`` with ``kql=``/``lucene=``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from contract.fields import fields
from contract.kql import KqlError, compile_kql

KIBANA = "elastic/kibana:"
SAVED_OBJECTS = "src/core/packages/saved-objects/"
LENS = "x-pack/platform/plugins/shared/lens/"
DASHBOARD = "src/platform/plugins/shared/dashboard/server/dashboard_saved_object/"


@dataclass(frozen=True)
class Problem:
    rule: str
    source: str  # the Kibana file the rule comes from
    type: str
    id: str
    message: str
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.type}/{self.id}: [{self.rule}] {self.message} (Kibana: {self.source})"


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    check: Callable[[dict[str, Any], Catalog], Iterable[str]]
    fatal: bool = False


class Catalog:
    """The objects of one import, by (type, id)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.by_key = {(o.get("type"), o.get("id")): o for o in objects}


RULES: list[Rule] = []


def rule(name: str, source: str, fatal: bool = False) -> Callable[[Callable], Callable]:
    def register(func: Callable) -> Callable:
        RULES.append(Rule(name, source, func, fatal))
        return func
    return register


def _semver(value: str) -> tuple[int, int, int]:
    major, minor, patch = value.split(".")
    return int(major), int(minor), int(patch)


def _valid_semver(value: Any) -> bool:
    try:
        _semver(value)
        return True
    except (AttributeError, ValueError):
        return False


# -- the import itself ----------------------------------------------------------------------

IMPORTABLE = {"index-pattern", "search", "lens", "dashboard", "visualization", "map", "tag", "config"}


@rule("supported-type", SAVED_OBJECTS + "import-export-server-internal/src/import/lib/collect_saved_objects.ts")
def _supported_type(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") not in IMPORTABLE:
        yield f"type {obj.get('type')!r} is not importable (unsupported_type)"
    for key in ("id", "type", "attributes", "references"):
        if key not in obj:
            yield f"no {key!r}"
    if not isinstance(obj.get("references", []), list):
        yield "references is not a list"


@rule("managed", SAVED_OBJECTS + "import-export-server-internal/src/import/lib/collect_saved_objects.ts")
def _managed(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    # the importer sets `managed: managed ?? obj.managed ?? false`; an object shipped as
    # managed would be read-only in Kibana's UI, ours are meant to be edited.
    if obj.get("managed") is not False:
        yield f"managed is {obj.get('managed')!r}, not false"


@rule("references-exist", SAVED_OBJECTS + "import-export-server-internal/src/import/lib/validate_references.ts")
def _references_exist(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    for ref in obj.get("references", []):
        if (ref.get("type"), ref.get("id")) not in catalog.by_key:
            yield f"missing_references: {ref.get('type')}/{ref.get('id')} (reference {ref.get('name')!r})"
    names = [r.get("name") for r in obj.get("references", [])]
    if len(names) != len(set(names)):
        yield "two references share a name"


# -- migrations -------------------------------------------------------------------------------

# The legacy (stack-version) transforms of each type, as Kibana registers them.
LEGACY_MIGRATIONS = {
    # data_views/server/saved_objects/index_pattern_migrations.ts
    "index-pattern": ["6.5.0", "7.6.0", "7.11.0"],
    # saved_search/server/saved_objects/search_migrations.ts (search-source maps are empty:
    # data/common/search/search_source/search_source_service.ts, data/common/query/filters/persistable_state.ts)
    "search": ["6.7.2", "7.0.0", "7.4.0", "7.9.3"],
    # lens/server/migrations/saved_object_migrations.ts
    "lens": ["7.7.0", "7.8.0", "7.10.0", "7.11.0", "7.12.0", "7.13.0", "7.13.1", "7.14.0", "7.15.0", "7.16.0",
             "8.1.0", "8.2.0", "8.3.0", "8.5.0", "8.6.0", "8.9.0"],
    # dashboard_saved_object/migrations/dashboard_saved_object_migrations.ts, merged with the
    # embeddables' migrations (Lens by-value panels to 8.9.0)
    "dashboard": ["6.7.2", "7.0.0", "7.3.0", "7.9.3", "7.11.0", "7.14.0", "7.17.3", "8.9.0"],
}
# convertToMultiNamespaceTypeVersion of each type (data_views.ts, search.ts, lens saved_objects.ts,
# dashboard_saved_object.ts): a Convert transform on typeMigrationVersion and a Reference transform
# on coreMigrationVersion (document_migrator/internal_transforms.ts)
CONVERSION = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.0.0", "dashboard": "8.0.0"}
CORE_TRANSFORMS = ["8.8.0"]  # document_migrator/migrations/index.ts
OLDEST_KIBANA = "8.10.0"  # the oldest Kibana the objects target (the first with Lens's duration format)


def pending_migrations(obj: dict[str, Any]) -> list[str]:
    """The legacy and core transforms Kibana's upgrade pipeline would run on this object on import.

    upgrade_pipeline.ts: a Core or Reference transform is pending when its version is greater than
    ``coreMigrationVersion``; a Convert or Migrate transform when ``typeMigrationVersion`` is set
    and lower. collect_saved_objects.ts sets ``typeMigrationVersion: ''`` on an object that has
    neither it nor ``migrationVersion``, so every migration of its type runs.
    """
    type_ = obj.get("type", "")
    core = obj.get("coreMigrationVersion")
    version = obj.get("typeMigrationVersion")
    if version is None and isinstance(obj.get("migrationVersion"), dict):
        version = obj["migrationVersion"].get(type_)
    if version is None:
        version = ""

    def newer(candidate: str, than: str | None) -> bool:
        return not than or _semver(candidate) > _semver(than)

    pending = [f"core {v}" for v in CORE_TRANSFORMS if newer(v, core)]
    if type_ in CONVERSION and newer(CONVERSION[type_], core):
        pending.append(f"reference {CONVERSION[type_]}")
    if type_ in CONVERSION and newer(CONVERSION[type_], version):
        pending.append(f"convert {CONVERSION[type_]}")
    pending += [f"{type_} {v}" for v in LEGACY_MIGRATIONS.get(type_, []) if newer(v, version)]
    return pending


@rule("no-legacy-migration",
      SAVED_OBJECTS + "migration-server-internal/src/document_migrator/pipelines/upgrade_pipeline.ts", fatal=True)
def _no_legacy_migration(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    for key in ("coreMigrationVersion", "typeMigrationVersion"):
        value = obj.get(key)
        if value is not None and value != "" and not _valid_semver(value):
            yield f"{key} {value!r} is not a semver version"
            return
    pending = pending_migrations(obj)
    if pending:
        yield (f"import would run {len(pending)} migrations: "
               f"{', '.join(pending[:6])}{' ...' if len(pending) > 6 else ''}")


@rule("not-from-the-future", SAVED_OBJECTS + "migration-server-internal/src/document_migrator/pipelines/utils.ts",
      fatal=True)
def _not_from_the_future(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    # assertValidCoreVersion: coreMigrationVersion above the running Kibana is refused;
    # upgrade_pipeline.ts assertCompatibility: so is a typeMigrationVersion above the type's newest.
    core = obj.get("coreMigrationVersion")
    if _valid_semver(core) and _semver(core) > _semver(OLDEST_KIBANA):
        yield f"coreMigrationVersion {core} is newer than Kibana {OLDEST_KIBANA}"
    version = obj.get("typeMigrationVersion")
    known = LEGACY_MIGRATIONS.get(obj.get("type", ""), [])
    newest = max(map(_semver, known + [CONVERSION.get(obj.get("type", ""), "0.0.0")])) if known else None
    if _valid_semver(version) and newest and newest < _semver(version) < (10, 0, 0):
        yield f"typeMigrationVersion {version} is newer than the type's last legacy migration in Kibana {OLDEST_KIBANA}"


# -- data views ---------------------------------------------------------------------------------

DATA_VIEW_ATTRIBUTES = {"title", "name", "timeFieldName", "fields", "fieldFormatMap", "fieldAttrs", "runtimeFieldMap",
                        "sourceFilters", "typeMeta", "type", "allowNoIndex", "allowHidden", "intervalName"}


@rule("data-view-attributes", "src/platform/plugins/shared/data_views/common/types.ts")
def _data_view(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "index-pattern":
        return
    attributes = obj.get("attributes", {})
    if not isinstance(attributes.get("title"), str) or not attributes["title"]:
        yield "a data view needs a title (its index pattern)"
    for key in set(attributes) - DATA_VIEW_ATTRIBUTES:
        yield f"unknown data view attribute {key!r}"
    time_field = attributes.get("timeFieldName")
    if time_field is not None and fields().get(time_field, None) is None:
        yield f"timeFieldName {time_field!r} is not a mapped field"
    elif time_field is not None and fields()[time_field].kibana_type != "date":
        yield f"timeFieldName {time_field!r} is not a date"


# -- saved searches -------------------------------------------------------------------------------

SEARCH_ATTRIBUTES = {"title", "description", "columns", "sort", "kibanaSavedObjectMeta", "grid", "hideChart",
                     "isTextBasedQuery", "usesAdHocDataView", "timeRestore", "timeRange", "refreshInterval",
                     "rowHeight", "headerRowHeight", "rowsPerPage", "sampleSize", "breakdownField", "viewMode",
                     "hideAggregatedPreview", "density", "visContext", "hits", "version"}


def _search_source(obj: dict[str, Any]) -> dict[str, Any] | None:
    meta = obj.get("attributes", {}).get("kibanaSavedObjectMeta")
    if not isinstance(meta, dict) or "searchSourceJSON" not in meta:
        return None
    source = json.loads(meta["searchSourceJSON"])
    return source if isinstance(source, dict) else None


def _kql_problems(where: str, query: Any) -> Iterable[str]:
    if not isinstance(query, dict):
        yield f"{where}: query is not an object"
        return
    if query.get("language") not in ("kuery", "lucene"):
        yield f"{where}: language {query.get('language')!r}"
        return
    if query.get("language") == "kuery":
        try:
            compile_kql(query.get("query", ""))
        except KqlError as exc:
            yield f"{where}: KQL {query.get('query')!r}: {exc}"


@rule("search-attributes", "src/platform/plugins/shared/saved_search/server/saved_objects/schema.ts")
def _search(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "search":
        return
    attributes = obj.get("attributes", {})
    if not isinstance(attributes.get("title"), str):
        yield "title is not a string"
    for key in set(attributes) - SEARCH_ATTRIBUTES:
        yield f"unknown saved search attribute {key!r}"
    columns = attributes.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        yield "columns is not a list of strings"
    for column in columns if isinstance(columns, list) else []:
        if column not in fields():
            yield f"column {column!r} is not a mapped field"
    for pair in attributes.get("sort", []):
        if not (isinstance(pair, list) and len(pair) == 2 and pair[1] in ("asc", "desc")):
            yield f"sort entry {pair!r} is not [field, asc|desc]"
    try:
        source = _search_source(obj)
    except json.JSONDecodeError as exc:
        yield f"searchSourceJSON is not JSON: {exc}"
        return
    if source is None:
        yield "kibanaSavedObjectMeta.searchSourceJSON is missing"
        return
    # saved_search/server/saved_objects/search_migrations.ts moved the index into a reference
    # named by indexRefName; the client injects it back from that reference.
    ref_name = source.get("indexRefName")
    if ref_name and not any(r.get("name") == ref_name for r in obj.get("references", [])):
        yield f"indexRefName {ref_name!r} names no reference"
    yield from _kql_problems("searchSourceJSON", source.get("query", {"query": "", "language": "kuery"}))


# -- dashboards -----------------------------------------------------------------------------------

# schema/v1/v1.ts: `dashboardAttributesSchema`, `{ unknowns: 'forbid' }`
DASHBOARD_ATTRIBUTES: dict[str, tuple[type, ...]] = {
    "title": (str,), "description": (str,), "kibanaSavedObjectMeta": (dict,), "timeRestore": (bool,),
    "timeFrom": (str,), "timeTo": (str,), "refreshInterval": (dict,), "controlGroupInput": (dict,),
    "panelsJSON": (str,), "optionsJSON": (str,), "hits": (int, float), "version": (int, float),
}
CONTROL_GROUP_STRINGS = ("panelsJSON", "controlStyle", "chainingSystem", "ignoreParentSettingsJSON")


@rule("dashboard-attributes", DASHBOARD + "schema/v1/v1.ts")
def _dashboard_attributes(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "dashboard":
        return
    attributes = obj.get("attributes", {})
    for key, value in attributes.items():
        if key not in DASHBOARD_ATTRIBUTES:
            yield f"[{key}]: definition for this key is missing (unknown dashboard attribute)"
        elif not isinstance(value, DASHBOARD_ATTRIBUTES[key]) or (isinstance(value, bool) and bool not in
                                                                   DASHBOARD_ATTRIBUTES[key]):
            yield f"[{key}]: expected {DASHBOARD_ATTRIBUTES[key][0].__name__}, got {type(value).__name__}"
    if "title" not in attributes:
        yield "[title]: expected value of type [string] but got [undefined]"
    interval = attributes.get("refreshInterval")
    if isinstance(interval, dict):
        if not isinstance(interval.get("pause"), bool) or not isinstance(interval.get("value"), (int, float)):
            yield "[refreshInterval]: needs pause (boolean) and value (number)"
        for key in set(interval) - {"pause", "value", "display", "section"}:
            yield f"[refreshInterval.{key}]: definition for this key is missing"
    meta = attributes.get("kibanaSavedObjectMeta")
    if isinstance(meta, dict):
        for key in set(meta) - {"searchSourceJSON"}:
            yield f"[kibanaSavedObjectMeta.{key}]: definition for this key is missing"
    group = attributes.get("controlGroupInput")
    if isinstance(group, dict):
        for key in CONTROL_GROUP_STRINGS:
            if key in group and not isinstance(group[key], str):
                yield f"[controlGroupInput.{key}]: expected string"


GRID_COLUMNS = 48  # DASHBOARD_GRID_COLUMN_COUNT (dashboard/common/content_management/constants.ts)


def _panels(obj: dict[str, Any]) -> list[Any]:
    raw = obj.get("attributes", {}).get("panelsJSON", "[]")
    parsed = json.loads(raw) if isinstance(raw, str) else []
    return parsed if isinstance(parsed, list) else []


def _panel_reference(panel_index: str, ref_name: str, references: list[dict[str, Any]]) -> dict[str, Any] | None:
    # createInject: the references prefixed "<panelIndex>:" (prefix stripped), or all of them
    # when none is; then the one whose name is panelRefName.
    prefix = f"{panel_index}:"
    own = [{**r, "name": r["name"][len(prefix):]} for r in references if str(r.get("name", "")).startswith(prefix)]
    return next((r for r in (own or references) if r.get("name") == ref_name), None)


@rule("dashboard-panels", DASHBOARD + "migrations/migrate_extract_panel_references/dashboard_container_references.ts")
def _dashboard_panels(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "dashboard":
        return
    try:
        panels = _panels(obj)
    except json.JSONDecodeError as exc:
        yield f"panelsJSON is not JSON: {exc}"
        return
    seen: set[str] = set()
    for n, panel in enumerate(panels):
        if not isinstance(panel, dict):
            yield f"panel {n} is not an object"
            continue
        index = panel.get("panelIndex")
        if not isinstance(index, str) or index in seen:
            yield f"panel {n}: panelIndex {index!r} missing or repeated"
        seen.add(str(index))
        if "type" not in panel:  # dashboard_saved_object_references.ts
            yield f'"type" attribute is missing from panel "{index}"'
        grid = panel.get("gridData", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            yield f"panel {index}: gridData needs integer x, y, w, h"
        elif not (1 <= grid["w"] <= GRID_COLUMNS and grid["h"] >= 1 and 0 <= grid["x"]
                  and grid["x"] + grid["w"] <= GRID_COLUMNS and grid["y"] >= 0):
            yield f"panel {index}: gridData {grid} is outside the {GRID_COLUMNS}-column grid"
        if grid.get("i") != index:  # dashboard_panel_converters.ts keys panels by panelIndex, gridData.i the same
            yield f"panel {index}: gridData.i {grid.get('i')!r} differs from panelIndex"
        if not isinstance(panel.get("embeddableConfig", {}), dict):
            yield f"panel {index}: embeddableConfig is not an object"
        ref_name = panel.get("panelRefName")
        if ref_name is not None:
            reference = _panel_reference(str(index), ref_name, obj.get("references", []))
            if reference is None:
                yield f'Could not find reference "{ref_name}" (panel {index})'
            elif reference.get("type") != panel.get("type"):
                yield f"panel {index}: type {panel.get('type')!r} but its reference is a {reference.get('type')!r}"
        elif panel.get("type") == "lens" and "attributes" not in panel.get("embeddableConfig", {}):
            yield f"panel {index}: a lens panel needs a panelRefName or by-value attributes"


CONTROL_TYPES = {"optionsListControl": "optionsListDataView", "rangeSliderControl": "rangeSliderDataView",
                 "timeSlider": None}


@rule("control-group", "src/platform/plugins/shared/controls/server/options_list/options_list_persistable_state.ts")
def _control_group(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    group = obj.get("attributes", {}).get("controlGroupInput") if obj.get("type") == "dashboard" else None
    if not isinstance(group, dict):
        return
    try:
        controls = json.loads(group.get("panelsJSON", "{}"))
        json.loads(group.get("ignoreParentSettingsJSON", "{}"))
    except json.JSONDecodeError as exc:
        yield f"controlGroupInput JSON: {exc}"
        return
    if not isinstance(controls, dict):
        yield "controlGroupInput.panelsJSON is not a map of controls"
        return
    references = {r.get("name"): r for r in obj.get("references", [])}
    for control_id, control in controls.items():
        kind = control.get("type")
        if kind not in CONTROL_TYPES:
            yield f"control {control_id}: unknown type {kind!r}"
            continue
        if not isinstance(control.get("order"), int) or control.get("width") not in ("small", "medium", "large"):
            yield f"control {control_id}: needs an integer order and width small|medium|large"
        explicit = control.get("explicitInput", {})
        field = explicit.get("fieldName")
        if CONTROL_TYPES[kind] is None:
            continue
        if field not in fields():
            yield f"control {control_id}: fieldName {field!r} is not a mapped field"
        # control_group_persistable_state: references "controlGroup_<id>:<name>" go to control <id>,
        # whose inject takes the data view from the one named optionsListDataView / rangeSliderDataView
        name = f"controlGroup_{control_id}:{CONTROL_TYPES[kind]}"
        reference = references.get(name)
        if reference is None or reference.get("type") != "index-pattern":
            yield f"control {control_id}: no index-pattern reference named {name!r}"


# -- Lens ------------------------------------------------------------------------------------------

VISUALIZATION_TYPES = {"lnsXY", "lnsDatatable", "lnsMetric", "lnsLegacyMetric", "lnsPie", "lnsGauge", "lnsHeatmap",
                       "lnsTagcloud", "lnsChoropleth"}
# operation type -> (bucketed, params it cannot be without); each from its definition under
# lens/public/datasources/form_based/operations/definitions/
OPERATIONS: dict[str, tuple[bool, dict[str, Callable[[Any], bool]]]] = {
    "count": (False, {}),
    "percentile": (False, {"percentile": lambda v: isinstance(v, (int, float)) and 0 < v < 100}),
    "average": (False, {}), "max": (False, {}), "min": (False, {}), "sum": (False, {}), "median": (False, {}),
    "unique_count": (False, {}), "last_value": (False, {"sortField": lambda v: isinstance(v, str)}),
    "terms": (True, {"size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                     "orderBy": lambda v: isinstance(v, dict) and v.get("type") in ("column", "alphabetical", "rare",
                                                                                     "significant", "custom"),
                     "orderDirection": lambda v: v in ("asc", "desc")}),
    "date_histogram": (True, {"interval": lambda v: isinstance(v, str) and bool(v)}),
    # formula/formula.tsx and formula/math.tsx: columns computed from the columns they reference
    "formula": (False, {"formula": lambda v: isinstance(v, str) and bool(v), "isFormulaBroken": lambda v: v is False}),
    "math": (False, {"tinymathAst": lambda v: isinstance(v, (dict, str, int, float)) and not isinstance(v, bool)}),
}
REFERENCE_OPERATIONS = {"formula", "math"}
NUMBER_OPERATIONS = {"average", "max", "min", "sum", "median", "percentile"}
RECORDS = "___records___"  # count's sourceField since the 8.1.0 migration (renameRecordsField)


def _lens_layers(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    datasources = obj["attributes"]["state"].get("datasourceStates", {})
    problems = [f"datasource {name!r}: Lens 8.6+ reads 'formBased' (the 8.6.0 migration renamed 'indexpattern')"
                for name in datasources if name not in ("formBased", "textBased")]
    return datasources.get("formBased", {}).get("layers", {}), problems


def _column_problems(column_id: str, column: dict[str, Any], columns: dict[str, Any]) -> Iterable[str]:
    op = column.get("operationType")
    if op not in OPERATIONS:
        yield f"column {column_id}: unknown operation {op!r}"
        return
    bucketed, required = OPERATIONS[op]
    if column.get("isBucketed") is not bucketed:
        yield f"column {column_id}: {op} has isBucketed {bucketed}"
    params = column.get("params", {})
    for name, valid in required.items():
        if name not in params or not valid(params[name]):
            yield f"column {column_id}: {op} needs a valid params.{name} (got {params.get(name)!r})"
    source = column.get("sourceField")
    if op in REFERENCE_OPERATIONS:
        references = column.get("references")
        if not isinstance(references, list) or not references:
            yield f"column {column_id}: a {op} column needs its references (formula/parse.ts)"
        else:
            for reference in references:
                if reference not in columns:
                    yield f"column {column_id}: references missing column {reference!r}"
        if source is not None:
            yield f"column {column_id}: a {op} column has no sourceField"
        expected = "number"
    elif op == "count":
        if source != RECORDS:
            yield f"column {column_id}: count's sourceField must be {RECORDS!r}"
        expected = "number"
    else:
        field = fields().get(source)
        if field is None:
            yield f"column {column_id}: sourceField {source!r} is not a mapped field"
            return
        if not field.aggregatable:
            yield f"column {column_id}: {source} is not aggregatable"
        if op in NUMBER_OPERATIONS and field.kibana_type != "number":
            yield f"column {column_id}: {op} of a {field.kibana_type} field"
        if op == "date_histogram" and field.kibana_type != "date":
            yield f"column {column_id}: date_histogram of a {field.kibana_type} field"
        expected = "number" if op in NUMBER_OPERATIONS or op == "unique_count" else field.kibana_type
    if column.get("dataType") != expected:
        yield f"column {column_id}: dataType {column.get('dataType')!r}, the field gives {expected!r}"
    order_by = params.get("orderBy", {}) if op == "terms" else {}
    if order_by.get("type") == "column" and order_by.get("columnId") not in columns:
        yield f"column {column_id}: orders by missing column {order_by.get('columnId')!r}"
    if "filter" in column:
        yield from _kql_problems(f"column {column_id} filter", column["filter"])


def _accessors(visualization_type: str, visualization: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(layerId, column ids) each visualization type reads from the datasource."""
    if visualization_type in ("lnsMetric", "lnsLegacyMetric"):
        ids = [visualization.get(k) for k in ("metricAccessor", "accessor", "secondaryMetricAccessor",
                                              "maxAccessor", "breakdownByAccessor")]
        return [(visualization.get("layerId"), [i for i in ids if i])]
    if visualization_type == "lnsDatatable":
        return [(visualization.get("layerId"), [c.get("columnId") for c in visualization.get("columns", [])])]
    if visualization_type == "lnsPie":
        return [(layer.get("layerId"), layer.get("primaryGroups", []) + layer.get("metrics", []))
                for layer in visualization.get("layers", [])]
    if visualization_type == "lnsXY":
        return [(layer.get("layerId"), layer.get("accessors", []) + [a for a in (layer.get("xAccessor"),
                                                                                 layer.get("splitAccessor")) if a])
                for layer in visualization.get("layers", [])]
    return []


@rule("lens-state", LENS + "server/migrations/saved_object_migrations.ts")
def _lens(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "lens":
        return
    attributes = obj.get("attributes", {})
    # server/content_management/v0/schema/common.ts (the create schema): title is a string
    if not isinstance(attributes.get("title"), str):
        yield "title is not a string"
    visualization_type = attributes.get("visualizationType")
    if visualization_type not in VISUALIZATION_TYPES:
        yield f"unknown visualizationType {visualization_type!r}"
    state = attributes.get("state")
    if not isinstance(state, dict):
        yield "no state"
        return
    layers, problems = _lens_layers(obj)
    yield from problems
    references = {r.get("name"): r for r in obj.get("references", [])}
    for layer_id, layer in layers.items():
        columns = layer.get("columns", {})
        if list(layer.get("columnOrder", [])) != [c for c in layer.get("columnOrder", []) if c in columns] or \
                set(layer.get("columnOrder", [])) != set(columns):
            yield f"layer {layer_id}: columnOrder {layer.get('columnOrder')} does not list exactly its columns"
        for column_id, column in columns.items():
            yield from _column_problems(column_id, column, columns)
        # extractReferences (7.10.0) put each layer's data view in "indexpattern-datasource-layer-<id>"
        reference = references.get(f"indexpattern-datasource-layer-{layer_id}")
        if reference is None or reference.get("type") != "index-pattern":
            yield f"layer {layer_id}: no index-pattern reference 'indexpattern-datasource-layer-{layer_id}'"
    for layer_id, accessors in _accessors(str(visualization_type), state.get("visualization", {})):
        if layer_id not in layers:
            yield f"visualization reads layer {layer_id!r}, the datasource has {sorted(layers)}"
            continue
        for accessor in accessors:
            if accessor not in layers[layer_id].get("columns", {}):
                yield f"visualization accessor {accessor!r} is not a column of layer {layer_id}"
    yield from _kql_problems("state.query", state.get("query", {"query": "", "language": "kuery"}))


# -- Lens value formats ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueFormat:
    params: frozenset[str]  # the parameters Lens's format editor writes for this id
    since: str | None  # the first Lens that formats with it; None: not pinned here, so refused


DURATION_INPUTS = {"picoseconds", "nanoseconds", "microseconds", "milliseconds", "seconds", "minutes", "hours",
                   "days", "weeks", "months", "years"}  # duration_formats.ts: inputFormats[].kind
DURATION_OUTPUTS = {"humanize", "humanizePrecise", "asMilliseconds", "asSeconds", "asMinutes", "asHours", "asDays",
                    "asWeeks", "asMonths", "asYears"}  # duration_formats.ts: outputFormats[].method
# format_selector.tsx supportedFormats: supportsDecimals / supportsSuffix / supportsCompact, and
# the duration units; number, percent and bytes since Lens 7.7 (elastic/kibana#56253), duration
# since 8.10 (elastic/kibana#162246).
VALUE_FORMATS = {
    "number": ValueFormat(frozenset({"decimals", "suffix", "compact"}), "7.7.0"),
    "percent": ValueFormat(frozenset({"decimals", "suffix", "compact"}), "7.7.0"),
    "bytes": ValueFormat(frozenset({"decimals", "suffix"}), "7.7.0"),
    "bits": ValueFormat(frozenset({"decimals", "suffix"}), None),
    "duration": ValueFormat(frozenset({"decimals", "suffix", "compact", "fromUnit", "toUnit"}), "8.10.0"),
    "custom": ValueFormat(frozenset({"decimals", "pattern"}), None),
}
DECIMALS = range(16)  # format_selector.tsx RANGE_MIN..RANGE_MAX
FORMAT_PARAMS: dict[str, Callable[[Any], bool]] = {
    "decimals": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in DECIMALS,
    "suffix": lambda v: isinstance(v, str),
    "compact": lambda v: isinstance(v, bool),
    "pattern": lambda v: isinstance(v, str) and bool(v),
    "fromUnit": lambda v: v in DURATION_INPUTS,
    "toUnit": lambda v: v in DURATION_OUTPUTS,
}


def format_problems(where: str, value_format: Any) -> Iterable[str]:
    """What is wrong with one ``params.format`` (a Lens ``ValueFormatConfig``)."""
    if not isinstance(value_format, dict) or set(value_format) - {"id", "params"}:
        yield f"{where}: format {value_format!r} is not {{id, params}}"
        return
    known = VALUE_FORMATS.get(value_format.get("id"))  # type: ignore[arg-type]
    if known is None:
        yield f"{where}: unknown format id {value_format.get('id')!r} (Lens knows {sorted(VALUE_FORMATS)})"
        return
    if known.since is None:
        yield f"{where}: format {value_format['id']!r} is not pinned to a Lens version the objects target"
    elif _semver(known.since) > _semver(OLDEST_KIBANA):
        yield f"{where}: format {value_format['id']!r} needs Kibana {known.since}, the objects target {OLDEST_KIBANA}"
    params = value_format.get("params", {})
    if not isinstance(params, dict):
        yield f"{where}: format params {params!r} is not an object"
        return
    for name, value in params.items():
        if name not in known.params:
            yield f"{where}: format {value_format['id']!r} takes no param {name!r} (it takes {sorted(known.params)})"
        elif not FORMAT_PARAMS[name](value):
            yield f"{where}: format param {name}={value!r} is not one Lens reads"


@rule("lens-value-format", LENS + "public/datasources/form_based/dimension_panel/format_selector.tsx")
def _lens_value_format(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "lens":
        return
    layers, _ = _lens_layers(obj)
    for layer_id, layer in layers.items():
        for column_id, column in layer.get("columns", {}).items():
            params = column.get("params") or {}
            if "format" not in params:
                continue
            where = f"layer {layer_id} column {column_id}"
            if column.get("dataType") != "number":  # format_column_fn.ts: only number columns are formatted
                yield f"{where}: a format on a {column.get('dataType')!r} column is never applied"
            yield from format_problems(where, params["format"])


# -- Lens formulas -----------------------------------------------------------------------------

_FORMULA_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_.@]*)"
                            r"|'(?P<quoted>(?:[^'\\]|\\.)*)'|(?P<op>[-+*/(),=]))")
_FORMULA_OPS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
FORMULA_FUNCTIONS = {"count"}  # the field operations this subset checks
# tinymath functions over numbers (kbn-lens-formula-docs src/math): the operators' and these
MATH_FUNCTIONS = {*_FORMULA_OPS.values(), "pick_max", "pick_min"}
FILTER_ARGS = {"kql": "kuery", "lucene": "lucene"}


class FormulaError(ValueError):
    """A formula outside the checked subset of tinymath."""


def _formula_tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(text.rstrip()):
        match = _FORMULA_TOKEN.match(text, at)
        if match is None:
            raise FormulaError(f"unexpected {text[at:].strip()[:10]!r} at {at}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":  # the grammar unescapes quotes; util.ts unescapeBackslashes the rest
            value = value.replace("\\'", "'").replace("\\\\", "\\")
        out.append((kind, value))
        at = match.end()
    return out


def parse_formula(text: str) -> Any:
    """The tinymath AST of a formula (functions as {name, args}, named arguments as
    {type: namedArgument}), without locations; FormulaError outside the subset."""
    tokens = _formula_tokens(text)
    pos = 0

    def peek(*values: str) -> bool:
        return pos < len(tokens) and tokens[pos][1] in values and tokens[pos][0] == "op"

    def take_op(value: str) -> None:
        nonlocal pos
        if not peek(value):
            raise FormulaError(f"expected {value!r} at token {pos}")
        pos += 1

    def binary(lower: Callable[[], Any], ops: tuple[str, ...]) -> Any:
        nonlocal pos
        node = lower()
        while peek(*ops):
            name = _FORMULA_OPS[tokens[pos][1]]
            pos += 1
            node = {"type": "function", "name": name, "args": [node, lower()]}
        return node

    def expression() -> Any:
        return binary(term, ("+", "-"))

    def term() -> Any:
        return binary(factor, ("*", "/"))

    def factor() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise FormulaError("unexpected end")
        kind, value = tokens[pos]
        if kind == "number":
            pos += 1
            return float(value) if "." in value else int(value)
        if peek("("):
            pos += 1
            node = expression()
            take_op(")")
            return node
        if kind != "name" or not (pos + 1 < len(tokens) and tokens[pos + 1] == ("op", "(")):
            raise FormulaError(f"expected a number, a function or '(' at token {pos}, found {value!r}")
        pos += 2
        args: list[Any] = []
        while not peek(")"):
            if args:
                take_op(",")
            if pos + 1 < len(tokens) and tokens[pos][0] == "name" and tokens[pos + 1] == ("op", "="):
                name = tokens[pos][1]
                pos += 2
                if pos >= len(tokens) or tokens[pos][0] not in ("quoted", "number", "name"):
                    raise FormulaError(f"named argument {name} has no value")
                args.append({"type": "namedArgument", "name": name, "value": tokens[pos][1]})
                pos += 1
            elif pos < len(tokens) and tokens[pos][0] == "name" and not (
                    pos + 1 < len(tokens) and tokens[pos + 1] == ("op", "(")):
                args.append({"type": "variable", "value": tokens[pos][1]})
                pos += 1
            else:
                args.append(expression())
        take_op(")")
        return {"type": "function", "name": value, "args": args}

    root = expression()
    if pos != len(tokens):
        raise FormulaError(f"unexpected {tokens[pos][1]!r} at token {pos}")
    return root


def formula_helpers(column_id: str, column: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The columns Lens's parse.ts stores for a formula column (without tinymath locations)."""
    text = column["params"]["formula"]
    label = f"Part of {column['label'] if column.get('customLabel') else text}"
    global_filter = column.get("filter")
    helpers: dict[str, dict[str, Any]] = {}

    def extract(node: Any) -> Any:
        if not isinstance(node, dict) or node.get("type") != "function":
            return node
        if node["name"] in MATH_FUNCTIONS:
            return {**node, "args": [extract(a) for a in node["args"]]}
        if node["name"] not in FORMULA_FUNCTIONS:
            raise FormulaError(f"function {node['name']!r} is outside the checked subset")
        named = {a["name"]: a["value"] for a in node["args"] if a.get("type") == "namedArgument"}
        fields_ = [a["value"] for a in node["args"] if a.get("type") == "variable"]
        if set(named) - set(FILTER_ARGS) or len(fields_) > 1 or len(named) > 1:
            raise FormulaError(f"arguments of {node['name']} outside the checked subset: {node['args']}")
        query = next(iter(named.items()), None)
        if global_filter and global_filter.get("query"):  # util.ts mergeWithGlobalFilters
            if query:
                query = (query[0], f"({global_filter['query']}) AND ({query[1]})")
            else:
                query = ({"kuery": "kql"}.get(global_filter["language"], global_filter["language"]),
                         global_filter["query"])
        helper: dict[str, Any] = {"label": label, "customLabel": True, "dataType": "number", "isBucketed": False,
                                  "scale": "ratio", "operationType": "count",
                                  "sourceField": fields_[0] if fields_ else RECORDS,
                                  "params": {"emptyAsNull": False}}  # count.tsx: !usedInMath
        if query:
            helper["filter"] = {"query": query[1], "language": FILTER_ARGS[query[0]]}
        helper_id = f"{column_id}X{len(helpers)}"
        helpers[helper_id] = helper
        return helper_id

    root = extract(parse_formula(text))
    if not isinstance(root, str):  # parse.ts: a top-level math column over the function columns
        def variables(node: Any) -> list[str]:
            if isinstance(node, str):
                return [node]
            return [v for a in node.get("args", []) for v in variables(a)] if isinstance(node, dict) else []
        helpers[f"{column_id}X{len(helpers)}"] = {
            "label": label, "customLabel": True, "dataType": "number", "isBucketed": False, "scale": "ratio",
            "operationType": "math", "references": variables(root), "params": {"tinymathAst": root}}
    return helpers


def _without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items() if k not in ("location", "text")}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


@rule("lens-formula", LENS + "public/datasources/form_based/operations/definitions/formula/parse.ts")
def _lens_formula(obj: dict[str, Any], catalog: Catalog) -> Iterable[str]:
    if obj.get("type") != "lens":
        return
    layers, _ = _lens_layers(obj)
    for layer_id, layer in layers.items():
        columns = layer.get("columns", {})
        for column_id, column in columns.items():
            if column.get("operationType") != "formula":
                continue
            where = f"layer {layer_id} formula {column_id}"
            try:
                expected = formula_helpers(column_id, column)
            except (FormulaError, KeyError, TypeError) as exc:
                yield f"{where}: {column.get('params', {}).get('formula')!r}: {exc}"
                continue
            stored = {c: col for c, col in columns.items() if c.startswith(f"{column_id}X")}
            if set(stored) != set(expected):
                yield f"{where}: helper columns {sorted(stored)}, Lens derives {sorted(expected)} from the formula"
                continue
            for helper_id, helper in expected.items():
                if _without_locations(stored[helper_id]) != helper:
                    yield (f"{where}: column {helper_id} is {_without_locations(stored[helper_id])}, "
                           f"the formula gives {helper}")
            last = list(expected)[-1] if expected else None
            if column.get("references") != ([last] if last else []):
                yield f"{where}: references {column.get('references')}, Lens sets [{last!r}]"
            if "format" in stored.get(last or "", {}).get("params", {}):
                yield f"{where}: the format belongs on the formula column, not on {last}"


def check(objects: list[dict[str, Any]]) -> list[Problem]:
    """Every rule broken by the objects of one import."""
    catalog = Catalog(objects)
    problems: list[Problem] = []
    keys = [(o.get("type"), o.get("id")) for o in objects]
    if len(keys) != len(set(keys)):  # get_non_unique_entries.ts: the whole import is a 400
        problems.append(Problem("unique-objects", SAVED_OBJECTS + "import-export-server-internal/src/import/lib/"
                                "get_non_unique_entries.ts", "-", "-", "the same type/id twice", fatal=True))
    for obj in objects:
        for r in RULES:
            try:
                messages = list(r.check(obj, catalog))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # Kibana's code throws here too
                messages = [f"{type(exc).__name__}: {exc}"]
            problems += [Problem(r.name, r.source, str(obj.get("type")), str(obj.get("id")), m, r.fatal)
                         for m in messages]
    return problems
