"""Kibana saved objects: held to Kibana's own rules offline, every panel's query run on a real node.

Kibana cannot run here. ``support.kibana_checker`` restates the checks Kibana's code applies on
import (each rule names its Kibana source file), the stand-in Kibana refuses what they refuse,
and each panel's Elasticsearch request is derived from its own Lens state (``kibana.lens_query``)
and run against the real node over the demo data.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from contract.fields import KIBANA_TYPES, fields, flatten
from contract.kql import KqlError, compile_kql, fields_named, to_dsl
from contract.streams import data_stream_name, dataset
from contract.traffic import COUNTED_FAILURES
from kibana.lens_query import bucket_values, lens_request, metric_values
from kibana.objects import NDJSON, all_objects, render
from kibana.saved_object import CORE_MIGRATION_VERSION, VERSIONS
from kibana.specs import CALL_KINDS
from rules.model import load_rules
from rules.query import Window
from rules.types import RULE_TYPES
from support.kibana_checker import (
    DURATION_INPUTS,
    DURATION_OUTPUTS,
    LEGACY_MIGRATIONS,
    VALUE_FORMATS,
    FormulaError,
    check,
    format_problems,
    parse_formula,
    pending_migrations,
)
from support.kibana_standin import SERVER_FIELDS, kibana_standin
from support.shipping import write_config
from test_queries import sample_docs

AGGREGATABLE = {"keyword", "long", "integer", "short", "byte", "double", "float", "date", "ip", "boolean"}
CLI = [sys.executable, "-m", "regwatch.cli"]


def objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines()]


def by_type(kind: str) -> list[dict[str, Any]]:
    return [o for o in objects() if o["type"] == kind]


def data_views() -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in by_type("index-pattern")}


def lens(lens_id: str) -> dict[str, Any]:
    return next(o for o in by_type("lens") if o["id"] == lens_id)


def test_committed_ndjson_is_the_generator_output() -> None:
    assert NDJSON.read_text() == render(), "run: python -m kibana.objects"


# -- the checker on the shipped objects -------------------------------------------------------


def test_the_shipped_objects_break_no_kibana_rule() -> None:
    problems = check(objects())
    assert problems == [], "\n".join(map(str, problems))
    assert {o["type"] for o in objects()} == {"index-pattern", "search", "lens", "dashboard"}
    assert {d["attributes"]["title"] for d in by_type("dashboard")} == {"Model Registry Overview", "Model activity",
                                                                         "Model versions in use", "Alerts",
                                                                         "Anomalies"}


def test_every_object_carries_the_version_fields_and_runs_no_migration() -> None:
    for obj in objects():
        assert obj["coreMigrationVersion"] == CORE_MIGRATION_VERSION
        assert obj["typeMigrationVersion"] == VERSIONS[obj["type"]]
        assert obj["managed"] is False
        assert pending_migrations(obj) == [], obj["id"]


def test_without_version_fields_kibana_would_run_every_lens_migration() -> None:
    bare = {k: v for k, v in lens("regwatch-activity-over-time").items()
            if k not in ("coreMigrationVersion", "typeMigrationVersion")}
    pending = pending_migrations(bare)
    assert [p for p in pending if p.startswith("lens ")] == [f"lens {v}" for v in LEGACY_MIGRATIONS["lens"]]
    assert "lens 7.7.0" in pending and "lens 7.10.0" in pending  # the two that throw on formBased state
    assert "core 8.8.0" in pending and "convert 8.0.0" in pending
    older = {**lens("regwatch-activity-over-time"), "typeMigrationVersion": "8.5.0"}
    assert pending_migrations(older) == ["lens 8.6.0", "lens 8.9.0"]


def _lens_terms_on(field: str) -> list[dict[str, Any]]:
    return [c for o in by_type("lens") for c in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
            ["layer1"]["columns"].values() if c.get("sourceField") == field and c["operationType"] == "terms"]


def test_lens_data_types_come_from_the_mapping() -> None:
    assert {c["dataType"] for c in _lens_terms_on("source.ip")} == {"ip"}
    assert {c["dataType"] for c in _lens_terms_on("http.response.status_code")} == {"number"}
    assert {c["dataType"] for c in _lens_terms_on("modelregistry.model.name")} == {"string"}


# -- the checker fails with the Kibana rule that was broken ---------------------------------------


def _first(kind: str, match: Callable[[dict[str, Any]], bool] = lambda o: True) -> Callable[[list], dict]:
    return lambda objs: next(o for o in objs if o["type"] == kind and match(o))


def _drop_versions(objs: list[dict[str, Any]]) -> None:
    obj = _first("lens")(objs)
    del obj["coreMigrationVersion"], obj["typeMigrationVersion"]


def _indexpattern_datasource(objs: list[dict[str, Any]]) -> None:
    state = _first("lens")(objs)["attributes"]["state"]
    state["datasourceStates"] = {"indexpattern": state["datasourceStates"]["formBased"]}


def _percentile_without_param(objs: list[dict[str, Any]]) -> None:
    obj = next(o for o in objs if o["id"] == "regwatch-latency-percentiles")
    columns = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]
    del columns["m0"]["params"]["percentile"]


def _terms_size_as_text(objs: list[dict[str, Any]]) -> None:
    obj = next(o for o in objs if o["id"] == "regwatch-retrievals-by-model")
    columns = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]
    columns["t0"]["params"]["size"] = "10"


def _unknown_dashboard_attribute(objs: list[dict[str, Any]]) -> None:
    _first("dashboard")(objs)["attributes"]["panelCount"] = 11


def _dangling_reference(objs: list[dict[str, Any]]) -> None:
    _first("lens")(objs)["references"][0]["id"] = "regwatch-no-such-view"


def _panel_ref_name(objs: list[dict[str, Any]]) -> None:
    dashboard = _first("dashboard")(objs)
    dashboard["references"][0]["name"] = "p1:panel_elsewhere"


def _control_reference(objs: list[dict[str, Any]]) -> None:
    dashboard = _first("dashboard", lambda o: "controlGroupInput" in o["attributes"])(objs)
    dashboard["references"] = [r for r in dashboard["references"] if not r["name"].startswith("controlGroup_")]


def _string_data_type_on_ip(objs: list[dict[str, Any]]) -> None:
    obj = next(o for o in objs if o["id"] == "regwatch-requests-by-source")
    columns = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]
    columns["t0"]["dataType"] = "string"


def _bad_kql(objs: list[dict[str, Any]]) -> None:
    obj = next(o for o in objs if o["id"] == "regwatch-availability-probes")
    column = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]["m0"]
    column["filter"]["query"] = "http.response.status_code >= four hundred"


def _missing_accessor(objs: list[dict[str, Any]]) -> None:
    obj = next(o for o in objs if o["attributes"].get("visualizationType") == "lnsXY")
    obj["attributes"]["state"]["visualization"]["layers"][0]["accessors"].append("m9")


def _layer(objs: list[dict[str, Any]], lens_id: str) -> dict[str, Any]:
    obj = next(o for o in objs if o["id"] == lens_id)
    return obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]


def _unknown_format_id(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-latency-percentiles")["m0"]["params"]["format"] = {"id": "nanoseconds", "params": {}}


def _unknown_format_param(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-latency-percentiles")["m1"]["params"]["format"]["params"]["inputFormat"] = "nanoseconds"


def _duration_unit_lens_does_not_know(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-latency-percentiles")["m2"]["params"]["format"]["params"]["fromUnit"] = "ns"


def _decimals_beyond_the_editor(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-error-rate")["m0"]["params"]["format"]["params"]["decimals"] = 16


def _format_on_a_date_column(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-latency-percentiles")["x"]["params"]["format"] = {"id": "number", "params": {"decimals": 0}}


def _formula_text_without_its_helpers(objs: list[dict[str, Any]]) -> None:
    formula = _layer(objs, "regwatch-error-rate")["m0"]["params"]
    formula["formula"] = formula["formula"].split(" / ")[0] + " / count()"  # over all documents, not actions


def _helpers_that_say_another_thing(objs: list[dict[str, Any]]) -> None:
    math = _layer(objs, "regwatch-error-rate")["m0X4"]["params"]["tinymathAst"]
    math["args"] = list(reversed(math["args"]))  # all / failed


def _helper_without_the_formula_filter(objs: list[dict[str, Any]]) -> None:
    _layer(objs, "regwatch-error-rate")["m0X1"].pop("filter")  # every event, access lines and alerts too


BREAKAGES = {
    "missing version fields": (_drop_versions, "no-legacy-migration",
                               "document_migrator/pipelines/upgrade_pipeline.ts", True),
    "indexpattern datasource": (_indexpattern_datasource, "lens-state",
                                "lens/server/migrations/saved_object_migrations.ts", False),
    "percentile without its param": (_percentile_without_param, "lens-state", "lens/", False),
    "terms size not a number": (_terms_size_as_text, "lens-state", "lens/", False),
    "unknown dashboard attribute": (_unknown_dashboard_attribute, "dashboard-attributes",
                                    "dashboard_saved_object/schema/v1/v1.ts", False),
    "dangling reference": (_dangling_reference, "references-exist", "import/lib/validate_references.ts", False),
    "panel reference name": (_panel_ref_name, "dashboard-panels", "dashboard_container_references.ts", False),
    "control without its data view": (_control_reference, "control-group", "controls/", False),
    "string dataType on an ip field": (_string_data_type_on_ip, "lens-state", "lens/", False),
    "invalid KQL in a column filter": (_bad_kql, "lens-state", "lens/", False),
    "accessor of no column": (_missing_accessor, "lens-state", "lens/", False),
    "unknown value format id": (_unknown_format_id, "lens-value-format", "format_selector.tsx", False),
    "unknown value format param": (_unknown_format_param, "lens-value-format", "format_selector.tsx", False),
    "duration unit Lens does not know": (_duration_unit_lens_does_not_know, "lens-value-format", "lens/", False),
    "decimals beyond the editor's range": (_decimals_beyond_the_editor, "lens-value-format", "lens/", False),
    "format on a date column": (_format_on_a_date_column, "lens-value-format", "lens/", False),
    "formula text without its helper columns": (_formula_text_without_its_helpers, "lens-formula", "formula/parse.ts",
                                                False),
    "helper columns saying another thing": (_helpers_that_say_another_thing, "lens-formula", "formula/parse.ts", False),
    "helper without the formula's filter": (_helper_without_the_formula_filter, "lens-formula", "formula/parse.ts",
                                            False),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_the_checker_names_the_kibana_rule_that_was_broken(name: str) -> None:
    breaks, rule, source, fatal = BREAKAGES[name]
    objs = copy.deepcopy(objects())
    breaks(objs)
    problems = check(objs)
    assert problems, name
    assert {p.rule for p in problems} == {rule}, "\n".join(map(str, problems))
    assert all(source in p.source for p in problems)
    assert all(p.fatal is fatal for p in problems)
    assert "Kibana: " in str(problems[0]) and problems[0].source in str(problems[0])


def test_value_formats_are_checked_against_lens_lists() -> None:
    assert {"nanoseconds", "milliseconds", "seconds"} <= DURATION_INPUTS
    assert {"humanize", "humanizePrecise", "asMilliseconds"} <= DURATION_OUTPUTS
    assert set(VALUE_FORMATS) == {"number", "percent", "bytes", "bits", "duration", "custom"}
    assert list(format_problems("c", {"id": "duration", "params": {"fromUnit": "nanoseconds",
                                                                    "toUnit": "humanizePrecise", "decimals": 1}})) == []
    assert list(format_problems("c", {"id": "bytes", "params": {"decimals": 2}})) == []
    assert list(format_problems("c", {"id": "percent", "params": {"decimals": 1, "compact": True}})) == []
    assert ["c: format 'bytes' takes no param 'compact' (it takes ['decimals', 'suffix'])"] == list(
        format_problems("c", {"id": "bytes", "params": {"compact": True}}))
    assert ["c: format param toUnit='asNanoseconds' is not one Lens reads"] == list(
        format_problems("c", {"id": "duration", "params": {"toUnit": "asNanoseconds"}}))
    assert ["c: format 'custom' is not pinned to a Lens version the objects target"] == list(
        format_problems("c", {"id": "custom", "params": {"pattern": "0.0"}}))
    assert list(format_problems("c", {"id": "number", "params": {"decimals": True}})) == [
        "c: format param decimals=True is not one Lens reads"]


def test_formula_subset_parses_as_tinymath_does() -> None:
    assert parse_formula("count(kql='a : \\'b\\'') / count()") == {"type": "function", "name": "divide", "args": [
        {"type": "function", "name": "count", "args": [{"type": "namedArgument", "name": "kql", "value": "a : 'b'"}]},
        {"type": "function", "name": "count", "args": []}]}
    assert parse_formula("1 - 2 / 4")["name"] == "subtract"  # * and / bind tighter
    assert parse_formula("(1 - 2) / 4")["name"] == "divide"
    for broken in ("count(", "count() /", "count() ; 1", "count(kql=)"):
        with pytest.raises(FormulaError):
            parse_formula(broken)


# -- what each panel shows -------------------------------------------------------------------------


def _shown(obj: dict[str, Any]) -> list[str]:
    """The metric columns a visualization shows (its accessors that are not buckets)."""
    visualization = obj["attributes"]["state"]["visualization"]
    columns = _columns(obj)
    if "metricAccessor" in visualization:
        shown = [visualization["metricAccessor"]]
    elif "columns" in visualization:
        shown = [c["columnId"] for c in visualization["columns"]]
    else:
        shown = [a for layer in visualization["layers"] for a in layer.get("accessors", layer.get("metrics", []))]
    return [c for c in shown if not columns[c]["isBucketed"]]


READABLE = {  # the unit of what a column measures -> the format a person reads it in
    "count": {"id": "number", "params": {"decimals": 0}},
    "nanoseconds": {"id": "duration", "params": {"fromUnit": "nanoseconds", "toUnit": "humanizePrecise",
                                                 "decimals": 1}},
    "ratio": {"id": "percent", "params": {"decimals": 1}},
    "score": {"id": "number", "params": {"decimals": 0}},  # an anomaly score, 0-100
    "series value": {"id": "number", "params": {"decimals": 1}},  # an anomaly rule's count or metric
}


def _unit(column: dict[str, Any]) -> str:
    if column["operationType"] in ("count", "unique_count"):
        return "count"
    if column["operationType"] == "formula":  # actions (pick_max of two counts), or failed over all actions
        return "ratio" if " / " in column["params"]["formula"] else "count"
    if column["sourceField"] == "modelregistry.anomaly.score":
        return "score"
    if column["sourceField"].startswith("modelregistry.anomaly."):
        return "series value"
    assert column["sourceField"] == "event.duration", f"no unit known for {column['sourceField']}"
    return "nanoseconds"  # ECS: event.duration is in nanoseconds


def test_every_metric_column_a_panel_shows_carries_the_format_a_person_reads() -> None:
    seen = set()
    for obj in by_type("lens"):
        for column_id in _shown(obj):
            column = _columns(obj)[column_id]
            unit = _unit(column)
            seen.add(unit)
            assert column["params"].get("format") == READABLE[unit], f"{obj['id']}/{column_id}"
    assert seen == set(READABLE)


def test_the_response_time_panel_formats_nanoseconds_as_a_duration() -> None:
    obj = lens("regwatch-latency-percentiles")
    assert "(ns)" not in obj["attributes"]["title"]
    formats = {c: _columns(obj)[c]["params"]["format"] for c in _shown(obj)}
    assert formats == {c: {"id": "duration", "params": {"fromUnit": "nanoseconds", "toUnit": "humanizePrecise",
                                                        "decimals": 1}} for c in ("m0", "m1", "m2")}
    assert check([obj, *by_type("index-pattern")]) == []


# -- KQL ---------------------------------------------------------------------------------------


def test_kql_compiles_the_subset_the_objects_use() -> None:
    assert compile_kql("") == {"match_all": {}}
    assert compile_kql('event.action : "firing"') == {"match_phrase": {"event.action": "firing"}}
    assert compile_kql("modelregistry.probe.up : false") == {"match": {"modelregistry.probe.up": False}}
    assert compile_kql("http.response.status_code >= 500") == {"range": {"http.response.status_code": {"gte": 500}}}
    assert compile_kql("user.name : * and not (event.action : a or event.action : b)") == {"bool": {"filter": [
        {"exists": {"field": "user.name"}},
        {"bool": {"must_not": [{"bool": {"should": [{"match": {"event.action": "a"}}, {"match": {"event.action": "b"}}],
                                         "minimum_should_match": 1}}]}}]}}
    assert fields_named('a.b : 1 or event.action : "x"') == {"a.b", "event.action"}


@pytest.mark.parametrize("query", [
    "no.such.field : 1", "http.response.status_code : many", "modelregistry.probe.up : maybe",
    "event.action > 3", "(event.action : a", "event.action :", "event.action : a and", ": a",
    "event.action : fir*", "event.action = a",
])
def test_kql_outside_the_subset_or_the_mapping_is_refused(query: str) -> None:
    with pytest.raises(KqlError):
        compile_kql(query)


def test_every_kql_string_in_the_objects_is_checked() -> None:
    found = []
    for obj in by_type("lens"):
        state = obj["attributes"]["state"]
        found.append(state["query"]["query"])
        for column in state["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"].values():
            if "filter" in column:
                found.append(column["filter"]["query"])
    assert len([q for q in found if q]) >= 6
    for query in found:
        compile_kql(query)


# -- the real node -------------------------------------------------------------------------------


def _columns(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]


def test_every_lens_field_is_mapped_on_the_node_with_the_type_lens_declares(es: Elasticsearch) -> None:
    # the node's own mapping (the template as installed), not the YAML the generator read
    simulated = es.indices.simulate_index_template(name="logs-modelregistry.access-probe")
    mapped = {name: f.es_type for name, f in flatten(simulated["template"]["mappings"]["properties"]).items()}
    for obj in by_type("lens"):
        for column_id, column in _columns(obj).items():
            source = column.get("sourceField")
            if source in ("___records___", None):  # counts of documents; formula and math columns
                continue
            assert mapped.get(source) in AGGREGATABLE, f"{obj['id']}/{column_id}: {source} is {mapped.get(source)}"
            if column["operationType"] == "terms":
                assert column["dataType"] == KIBANA_TYPES[mapped[source]], f"{obj['id']}/{column_id}"
            if "filter" in column:
                for name in fields_named(column["filter"]["query"]):
                    assert name in mapped, f"{obj['id']}/{column_id}: filter on unmapped {name}"
    assert set(mapped) == set(fields())


def _index_for(title: str, namespace: str) -> str:
    return title[:-1] + (f"*-{namespace}" if title.endswith(".*") else namespace)


def _has_data(response: dict) -> bool:
    aggs = response.get("aggregations")
    if not aggs:
        return response["hits"]["total"]["value"] > 0
    shown: dict[str, bool] = {}  # every column of the panel has something to show (a formula: any of its counts)
    for name, agg in aggs.items():
        column = name.split("X")[0]
        if "buckets" in agg:
            shown[column] = shown.get(column, False) or bool(agg["buckets"])
        elif "doc_count" in agg:
            shown[column] = shown.get(column, False) or agg["doc_count"] > 0
        else:
            shown[column] = shown.get(column, False) or agg.get("value") is not None or bool(agg.get("values"))
    return all(shown.values())


@pytest.mark.parametrize("lens_id", [o["id"] for o in by_type("lens")])
def test_each_panel_query_from_its_lens_state_runs_on_the_real_node(es: Elasticsearch, demo_namespace: str,
                                                                     lens_id: str) -> None:
    obj = lens(lens_id)
    request = lens_request(obj, data_views())
    response = es.search(index=_index_for(request.index, demo_namespace), allow_no_indices=True,
                         ignore_unavailable=True, **request.body)
    assert not response["timed_out"] and response["_shards"]["failed"] == 0
    if "Empty is expected" in obj["attributes"]["description"]:
        return  # the availability and alert panels: filled by the probe and the rule runner
    assert _has_data(response), f"{lens_id} is empty on the demo data"


def test_a_column_filter_counts_what_the_same_query_counts_on_its_own(es: Elasticsearch, demo_namespace: str) -> None:
    """The derived request is the panel's: its 4xx and 5xx series add up to the error actions by
    status, minute by minute the larger of the audit trail's and the access log's counts."""
    obj = lens("regwatch-errors-4xx-5xx")
    request = lens_request(obj, data_views())
    index = _index_for(request.index, demo_namespace)
    rows = bucket_values(obj, es.search(index=index, **request.body))
    sums = {m: sum(values[m] or 0 for _, values in rows) for m in ("m0", "m1")}
    expected = {}
    for column, status in (("m0", {"gte": 400, "lt": 500}), ("m1", {"gte": 500})):
        minutes = es.search(index=index, size=0, query={"range": {"http.response.status_code": status}}, aggs={
            "x": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                  "aggs": {"trail": {"filter": {"term": {"modelregistry.format": "audit"}}}}}})
        expected[column] = sum(max(b["trail"]["doc_count"], b["doc_count"] - b["trail"]["doc_count"])
                               for b in minutes["aggregations"]["x"]["buckets"])
    assert sums == expected and expected["m0"] > 0 and expected["m1"] > 0


def _calls_index(namespace: str) -> str:
    return ",".join(data_stream_name(kind, namespace) for kind in CALL_KINDS)


def _counted_failure(doc: dict) -> bool:
    """A call the error rate counts as failed, from its status as a person reads it: 5xx, 401, 403,
    429 (a record without a status: by the kind its error code gave it)."""
    if doc["event"]["outcome"] != "failure":
        return False
    status = doc.get("http", {}).get("response", {}).get("status_code")
    if status is None:
        return doc["modelregistry"].get("failure") in COUNTED_FAILURES
    return status >= 500 or status in (401, 403, 429)


def test_the_error_rate_panel_shows_failed_calls_over_all_calls(es: Elasticsearch, demo_namespace: str) -> None:
    """The number the metric shows, computed from the panel's own request on the demo data, is
    failed registry calls / all registry calls, counted here with plain Query DSL and from the
    sample files."""
    obj = lens("regwatch-error-rate")
    request = lens_request(obj, data_views())
    response = es.search(index=_index_for(request.index, demo_namespace), **request.body)
    accessor = obj["attributes"]["state"]["visualization"]["metricAccessor"]
    shown = metric_values(obj, response)[accessor]

    calls = {"terms": {"data_stream.dataset": [dataset(kind) for kind in CALL_KINDS]}}
    everything = f"logs-modelregistry.*-{demo_namespace}"
    all_calls = es.count(index=everything, query=calls)["count"]
    # failures that mean something is wrong: 5xx, 401, 403, 429 (not a 404 on a lookup)
    counted = {"terms": {"modelregistry.failure": list(COUNTED_FAILURES)}}
    failed = es.count(index=everything, query={"bool": {"filter": [calls, counted]}})
    docs = [d for d in sample_docs() if d["data_stream"]["dataset"] in {dataset(k) for k in CALL_KINDS}]
    assert all_calls == len(docs) > 0
    assert failed["count"] == sum(_counted_failure(d) for d in docs) > 0
    # the 4xx of a client's ordinary flow are failed calls (event.outcome) the rate does not count
    assert sum(d["event"]["outcome"] == "failure" for d in docs) > failed["count"]
    # actions: the larger of the audit trail's and the other records' counts (each action once)
    trail = [d for d in docs if d["modelregistry"]["format"] == "audit"]
    others = [d for d in docs if d["modelregistry"]["format"] != "audit"]
    assert trail and others
    actions = max(len(trail), len(others))
    failed_actions = max(sum(map(_counted_failure, trail)), sum(map(_counted_failure, others)))
    assert shown == pytest.approx(failed_actions / actions)
    assert 0 < shown < 1
    # every other event the data view sees (access lines, alerts) is left out of the rate
    assert es.count(index=everything)["count"] > all_calls
    assert _columns(obj)[accessor]["params"]["format"] == {"id": "percent", "params": {"decimals": 1}}


def test_the_error_rate_panel_and_the_registry_error_ratio_rule_count_the_same_calls(
        es: Elasticsearch, demo_namespace: str) -> None:
    rules = yaml.safe_load((Path(__file__).parent.parent / "rules" / "builtin" / "registry.yaml").read_text())["rules"]
    rule = next(r for r in rules if r["name"] == "registry-error-ratio")
    assert tuple(rule["kinds"]) == CALL_KINDS
    index = ",".join(data_stream_name(kind, demo_namespace) for kind in rule["kinds"])
    users = to_dsl(rule["kql"])  # the probe's requests left out, by both
    trail = {"term": {"modelregistry.format": "audit"}}
    numerator_query = {"query_string": {"query": rule["numerator"]}}

    def count(*clauses: dict, audit: bool) -> int:
        where = {"filter": [users, *clauses, trail]} if audit else {"filter": [users, *clauses], "must_not": [trail]}
        return es.count(index=index, query={"bool": where})["count"]

    parts = (count(numerator_query, audit=True), count(numerator_query, audit=False),
             count(audit=True), count(audit=False))
    numerator, total = max(parts[0], parts[1]), max(parts[2], parts[3])

    obj = lens("regwatch-error-rate")
    request = lens_request(obj, data_views())
    values = metric_values(obj, es.search(index=_index_for(request.index, demo_namespace), **request.body))
    formula = _columns(obj)["m0"]
    helpers = _columns(obj)[formula["references"][0]]["references"]
    assert tuple(values[h] for h in helpers) == parts
    assert values["m0"] == pytest.approx(numerator / total) and numerator > 0
    # the rule measures the same number from the same documents (its windows aside)
    ratio = RULE_TYPES["ratio"]
    model = next(r for r in load_rules(Path(__file__).parent.parent / "rules" / "builtin")
                 if r.name == "registry-error-ratio").model_copy(update={"time_field": "@timestamp",
                                                                           "min_events": 0})
    window = Window(0, time.time() + 86400)
    measured = ratio.measure(model, es.search(index=index, **ratio.request(model, window)), window)
    assert [m.value for m in measured] == [pytest.approx(numerator / total)]
    # the demo's failed calls are mostly a client's 404s: counted as failures they would cross the
    # rule's bound; as the rule and panel count them (5xx, 401, 403, 429) they do not
    outcome_failed = es.count(index=index, query={"bool": {"filter": [users, {"term": {"event.outcome": "failure"}}]}})
    assert outcome_failed["count"] / total > rule["condition"]["value"] > numerator / total


def test_metric_values_follow_lens_math() -> None:
    obj = lens("regwatch-error-rate")
    counts = ("m0X0", "m0X1", "m0X2", "m0X3")  # failed (audit trail, others), all (audit trail, others)
    empty = {"hits": {"total": {"value": 0}}, "aggregations": {c: {"doc_count": 0} for c in counts}}
    assert metric_values(obj, empty) == {"m0": None, **{c: 0.0 for c in counts}, "m0X4": None}  # 0/0: onError null
    some = {"hits": {"total": {"value": 90}},
            "aggregations": {c: {"doc_count": n} for c, n in zip(counts, (0, 3, 20, 60), strict=True)}}
    assert metric_values(obj, some)["m0"] == pytest.approx(3 / 60)
    audit_only = {"hits": {"total": {"value": 25}},
                  "aggregations": {c: {"doc_count": n} for c, n in zip(counts, (2, 0, 25, 0), strict=True)}}
    assert metric_values(obj, audit_only)["m0"] == pytest.approx(2 / 25)


def test_setup_creates_every_data_stream_the_objects_read_empty(es: Elasticsearch, es_url: str, namespace: str,
                                                                tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(tmp_path / "none.log")])
    for _ in range(2):  # the second run finds them all and leaves them empty
        run = subprocess.run([*CLI, "setup", "-c", str(config)], capture_output=True, text=True, timeout=120,
                             check=False)
        assert run.returncode == 0, run.stderr
    assert "created 0 empty data streams" in run.stderr
    for view in data_views().values():
        index = _index_for(view["attributes"]["title"], namespace)
        assert es.count(index=index)["count"] == 0
        caps = es.field_caps(index=index, fields="*")["fields"]
        for obj in by_type("lens"):
            if obj["references"][0]["id"] != view["id"]:
                continue
            for column in _columns(obj).values():
                if column.get("sourceField") not in ("___records___", None):
                    assert column["sourceField"] in caps, f"{obj['id']}: {column['sourceField']} not found in {index}"


# -- the stand-in Kibana: import, export, round trip ------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "KIBANA_API_KEY": "a2V5OnNlY3JldA==", **(env or {})})


def test_import_and_export_commands() -> None:
    with kibana_standin() as (url, state):
        first = _cli("kibana", "import", "--url", url, "--space", "team")
        assert first.returncode == 0, first.stderr
        assert f"created={len(objects())} updated=0 failed=0" in first.stdout
        second = _cli("kibana", "import", "--url", url, "--space", "team")
        assert f"created=0 updated={len(objects())} failed=0" in second.stdout
        assert state.headers[0]["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        assert {space for space, _, _ in state.stored} == {"team"}


def test_an_import_kibana_would_refuse_fails_in_the_stand_in(tmp_path: Path) -> None:
    bare = tmp_path / "bare.ndjson"  # what the objects were before: no version fields
    bare.write_text("".join(json.dumps({k: o[k] for k in ("id", "type", "attributes", "references")}) + "\n"
                            for o in objects()))
    dangling = tmp_path / "dangling.ndjson"
    broken = copy.deepcopy(objects())
    _dangling_reference(broken)
    dangling.write_text("".join(json.dumps(o) + "\n" for o in broken))
    with kibana_standin() as (url, state):
        refused = _cli("kibana", "import", "--url", url, "--file", str(bare))
        assert refused.returncode == 1 and state.stored == {}
        assert "HTTP 500" in refused.stderr and "no-legacy-migration" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        partial = _cli("kibana", "import", "--url", url, "--file", str(dangling))
        assert partial.returncode == 1
        assert f"created={len(objects()) - 1} updated=0 failed=1" in partial.stdout
        assert "missing_references" in partial.stdout


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in SERVER_FIELDS}


def test_round_trip_generate_import_export_import_gives_identical_objects(tmp_path: Path) -> None:
    generated = {(o["type"], o["id"]): o for o in all_objects()}
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    with kibana_standin() as (url, _state):
        assert _cli("kibana", "import", "--url", url).returncode == 0
        assert _cli("kibana", "export", "--url", url, "--out", str(first)).returncode == 0
        exported = [json.loads(line) for line in first.read_text().splitlines()]
        assert all(set(SERVER_FIELDS) <= set(o) for o in exported), "export keeps the fields Kibana gives"
        assert {(o["type"], o["id"]) for o in exported} == set(generated)  # dashboards, searches and all they use
        for obj in exported:
            assert _content(obj) == generated[(obj["type"], obj["id"])]
        again = _cli("kibana", "import", "--url", url, "--file", str(first))
        assert again.returncode == 0 and f"updated={len(generated)} failed=0" in again.stdout
        assert _cli("kibana", "export", "--url", url, "--out", str(second)).returncode == 0
    reexported = [json.loads(line) for line in second.read_text().splitlines()]
    assert [_content(o) for o in reexported] == [_content(o) for o in exported]
    assert [o["created_at"] for o in reexported] == [o["created_at"] for o in exported]
