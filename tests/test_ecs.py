"""regwatch's mapping and documents against the Elastic Common Schema (#28), read from ECS's own
field definitions: ``tests/support/ecs/fields-9.4.0.yaml``, the facts (types, allowed values)
extracted from elastic/ecs ``generated/ecs/ecs_flat.yml`` at tag v9.4.0 by
``tests/support/ecs/extract.py`` (Apache-2.0, LICENSE.txt beside it).

A ratchet while #28 is open: every ECS field regwatch maps has ECS's type except the deviations
listed here, each of which must still be one (fixing it means deleting its line); every other
field is under ``modelregistry.*`` or is a field a Beats module or integration defines, listed
with its source; every categorization value a document carries is one ECS allows.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from contract.ecs import ECS_VERSION
from contract.fields import fields
from contract.mappings import mappings
from parsers.categorization import categorization
from parsers.routes import load_table
from pipeline.inputs import agent_fields
from pipeline.probe.check import CheckResult
from pipeline.probe.documents import availability_document, resource_document
from pipeline.templates import DEGRADED, degrade
from rules.alerting import EVENT_TYPES, SEVERITIES
from support.parsing import SAMPLES, parse_file, parse_lines
from test_queries import sample_docs

ECS = Path(__file__).parent / "support" / "ecs" / "fields-9.4.0.yaml"

# ECS field -> (our type, why it differs). Empty since #28 item 3: every ECS field has ECS's type in
# the template; a node lacking a type's module holds the degraded form (pipeline/templates.py).
DEVIATIONS: dict[str, str] = {}
# Fields outside ECS that Beats modules and integrations define, with the type we map them to and
# where they come from (checked against elastic/beats: filebeat/_meta/fields.common.yml, the
# filestream input's file identity, metricbeat/module/system/_meta/fields.yml: ``*.pct`` scaled_float).
BEATS = {
    "log.offset": ("long", "Filebeat (filebeat/_meta/fields.common.yml)"),
    "log.file.device_id": ("keyword", "Filebeat filestream (file identity)"),
    "log.file.inode": ("keyword", "Filebeat filestream (file identity)"),
    "log.file.fingerprint": ("keyword", "Filebeat filestream (fingerprint identity)"),
    "process.cpu.pct": ("scaled_float", "Metricbeat system module (system.process)"),
    "process.memory.pct": ("scaled_float", "Metricbeat system module (system.process)"),
    "process.memory.rss.bytes": ("long", "Metricbeat system module (system.process)"),
    "system.filesystem.free": ("long", "Metricbeat system module (system.filesystem)"),
    "system.filesystem.mount_point": ("keyword", "Metricbeat system module (system.filesystem)"),
    "system.filesystem.total": ("long", "Metricbeat system module (system.filesystem)"),
    "system.filesystem.used.bytes": ("long", "Metricbeat system module (system.filesystem)"),
    "system.filesystem.used.pct": ("scaled_float", "Metricbeat system module (system.filesystem)"),
    "system.memory.actual.used.bytes": ("long", "Metricbeat system module (system.memory)"),
    "system.memory.actual.used.pct": ("scaled_float", "Metricbeat system module (system.memory)"),
    "system.memory.total": ("long", "Metricbeat system module (system.memory)"),
}
# Multi-fields of our own on ECS fields (ECS defines none there): none since #28
OWN_MULTI_FIELDS: set[str] = set()


@cache
def ecs() -> dict[str, Any]:
    return yaml.safe_load(ECS.read_text())["fields"]


def test_the_ecs_facts_are_ecs_9_4_0() -> None:
    data = yaml.safe_load(ECS.read_text())
    assert data["version"] == "9.4.0" and len(data["fields"]) > 2500
    assert data["fields"]["event.duration"] == {"type": "long"}
    assert set(data["fields"]["event.kind"]["allowed"]) >= {"event", "alert", "metric", "pipeline_error"}
    assert (Path(__file__).parent / "support" / "ecs" / "LICENSE.txt").read_text().lstrip().startswith("Apache License")


def test_every_ecs_field_we_map_has_the_ecs_type_or_is_a_listed_deviation() -> None:
    ours = fields()
    wrong = {name: f.es_type for name, f in ours.items() if name in ecs() and f.es_type != ecs()[name]["type"]}
    assert wrong == DEVIATIONS
    for name, ours_type in DEVIATIONS.items():  # each still what the list says (a fixed one is deleted from it)
        assert ours[name].es_type == ours_type


def _multi_fields() -> dict[str, str]:
    return {f"{name}.{sub}": sub_type for name, spec in ecs().items()
            for sub, sub_type in spec.get("multi_fields", {}).items()}


def test_ecs_multi_fields_and_ignore_above_are_ecs() -> None:
    """ECS's multi-fields (url.full.text, user_agent.original.text) with ECS's type, and ECS's
    ignore_above on every keyword (an oversized value leaves the field unindexed, the event stands)."""
    ours = fields()
    assert {name: ours[name].es_type for name in _multi_fields() if name in ours} == \
        {name: t for name, t in _multi_fields().items() if name in ours}
    assert {"url.full.text", "url.original.text", "user_agent.original.text"} <= set(ours)
    spec_of = _specs(mappings()["properties"])
    wrong = {name: spec_of[name].get("ignore_above") for name in ours
             if name in ecs() and ecs()[name]["type"] == "keyword"
             and spec_of[name].get("ignore_above") != ecs()[name].get("ignore_above")
             and spec_of[name].get("index") is not False}
    assert wrong == {}
    unbounded = [name for name, spec in spec_of.items() if spec.get("type") == "keyword"
                 and "ignore_above" not in spec and spec.get("index") is not False]
    assert unbounded == []


def _specs(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, spec in properties.items():
        if "properties" in spec:
            out.update(_specs(spec["properties"], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec
    return out


def test_every_other_field_is_ours_or_a_beats_field_with_its_type() -> None:
    outside = {name: f.es_type for name, f in fields().items()
               if name not in ecs() and not name.startswith("modelregistry.") and name not in OWN_MULTI_FIELDS
               and name not in _multi_fields()}
    assert outside == {name: es_type for name, (es_type, _) in BEATS.items()}


def _values(doc: dict[str, Any], dotted: str) -> list[Any]:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return []
        value = value.get(part)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _probe_docs() -> list[dict[str, Any]]:
    up = CheckResult("reg", "prod", "http://r/health", "health", True, 1.0, 0.01, 200)
    down = CheckResult("reg", "prod", "http://r/health", "health", False, 2.0, 0.01, None, "timeout")
    resources = resource_document({"host": {"cpu": {"usage": 0.5}}}, "default", "h", 3.0)[1]
    return [availability_document(up, "default", "h")[1], availability_document(down, "default", "h")[1], resources]


def _alert_docs() -> list[dict[str, Any]]:
    return [{"event": {"kind": "alert", "type": [EVENT_TYPES.get(state, "info")], "severity": SEVERITIES[severity]}}
            for state in ("pending", "firing", "resolved", "silenced") for severity in ("info", "critical")]


def test_every_categorization_value_a_document_carries_is_one_ecs_allows() -> None:
    deadletters = parse_lines("nginx", [b"not an access line\n", b'{"json": "in the wrong format"}\n'])
    docs = sample_docs() + deadletters + _probe_docs() + _alert_docs()
    assert len(docs) > 100
    allowed = {name: spec["allowed"] for name, spec in ecs().items() if "allowed" in spec}
    seen: dict[str, set[Any]] = {}
    for doc in docs:
        for name, values in allowed.items():
            for value in _values(doc, name):
                assert value in values, f"{name}: {value!r} is not an ECS value ({doc.get('event', {}).get('action')})"
                seen.setdefault(name, set()).add(value)
        for category in _values(doc, "event.category"):  # each type one ECS expects with the category
            for kind in _values(doc, "event.type"):
                assert kind in allowed["event.category"][category], (category, kind)
    assert seen["event.kind"] >= {"event", "metric", "alert", "pipeline_error"}
    assert seen["event.outcome"] == {"success", "failure"}
    assert seen["event.category"] >= {"web", "host"} and seen["event.type"] >= {"info", "error", "start", "end"}


def test_every_event_carries_its_category_and_type() -> None:
    events = [d for d in sample_docs() if d["event"]["kind"] == "event"]
    assert events and all(d["event"].get("category") and d["event"].get("type") for d in events)
    seen = {(d["event"]["action"], d["event"]["outcome"]): (d["event"]["category"], d["event"]["type"])
            for d in events}
    assert seen[("registered-model-create", "success")] == (["api"], ["creation"])
    assert seen[("registered-model-alias-set", "success")] == (["api"], ["change"])
    assert seen[("model-version-get-download-uri", "success")] == (["api"], ["access"])


def test_each_route_of_the_builtin_tables_has_an_ecs_categorization() -> None:
    tables = [load_table(path) for path in (Path(__file__).parent.parent / "parsers" / "routes").glob("*.yaml")]
    assert len(tables) == 3
    actions = {route.action: route.kind for table in tables
               for route in [*table.http.routes, *table.http.prefix_routes, *table.audit.values()]}
    assert len(actions) > 30
    expected = ecs()["event.category"]["allowed"]
    for action, kind in actions.items():
        for failed in (False, True):
            category, ecs_type = categorization(kind, action, failed)
            assert ecs_type in expected[category], (action, failed)
    assert categorization("registration", "registered-model-delete", False) == ("api", "deletion")
    assert categorization("version", "model-version-transition-stage", True) == ("api", "change")
    assert categorization("access", "http-request", False) == ("web", "access")
    assert categorization("access", "http-request", True) == ("web", "error")


def _line_docs() -> list[dict[str, Any]]:
    deadletters = parse_lines("nginx", [b"not an access line\n", b'{"json": "in the wrong format"}\n'])
    return sample_docs() + deadletters


def test_every_document_says_its_ecs_version_and_a_message() -> None:
    """ECS requires ecs.version (mapped: dynamic is false); Discover and Logs show message."""
    assert fields()["ecs.version"].es_type == "keyword" and fields()["message"].es_type == ecs()["message"]["type"]
    assert ECS_VERSION == yaml.safe_load(ECS.read_text())["version"]
    for doc in _line_docs() + _probe_docs():
        assert doc["ecs"] == {"version": ECS_VERSION}
        assert isinstance(doc["message"], str) and doc["message"] and "\n" not in doc["message"], doc


def test_the_message_of_each_kind_says_what_happened() -> None:
    (access,) = parse_lines("nginx", [b'127.0.0.1 - - [24/Nov/2026:23:55:40 +0000] "GET /api/2.0/mlflow/'
                                      b'registered-models/get?name=m HTTP/1.1" 200 10 "-" "x"'])
    assert access["message"] == "GET /api/2.0/mlflow/registered-models/get 200"
    (dead,) = parse_lines("nginx", [b"not an access line"])
    assert dead["message"] == dead["error"]["message"] == "not an access log line (combined / gunicorn format)"
    up, down, resources = _probe_docs()
    assert (up["message"], down["message"]) == ("reg health up 200 in 0.010 s", "reg health down: timeout in 0.010 s")
    assert resources["message"] == "resources of h"


def test_a_dead_letter_says_no_outcome_and_services_are_their_platforms() -> None:
    """A line that could not be read says nothing of the request's outcome (#28)."""
    (dead,) = parse_lines("cloudtrail", [b"{}"])
    assert dead["event"]["kind"] == "pipeline_error" and "outcome" not in dead["event"]
    assert dead["service"] == {"name": "sagemaker"}
    cloudtrail = parse_file("cloudtrail", SAMPLES / "audit" / "cloudtrail.jsonl")
    databricks = parse_file("databricks-audit", SAMPLES / "audit" / "databricks.jsonl")
    assert {d["service"]["name"] for d in cloudtrail} == {"sagemaker"}
    assert {d["service"]["name"] for d in databricks} == {"databricks"}
    (named,) = parse_lines("nginx", [b"x"], service_name="registry-eu")
    assert named["service"] == {"name": "registry-eu"}


def test_audit_records_carry_their_event_id_and_provider() -> None:
    cloudtrail = parse_file("cloudtrail", SAMPLES / "audit" / "cloudtrail.jsonl")
    assert cloudtrail[0]["event"]["id"] == "e0000000-0000-4000-8000-000000000001"
    assert {d["event"]["provider"] for d in cloudtrail} >= {"sagemaker.amazonaws.com"}
    databricks = parse_file("databricks-audit", SAMPLES / "audit" / "databricks.jsonl")
    assert databricks[0]["event"]["id"] == "0a1b2c3d-0000-4000-8000-000000000001"
    assert databricks[0]["event"]["provider"] == "mlflowModelRegistry"
    (row,) = parse_lines("databricks-audit", [b'{"event_time": "2026-11-25T20:07:10Z", "event_id": "ev-1", '
                                              b'"request_id": "rq-1", "service_name": "unityCatalog", '
                                              b'"action_name": "getModelVersion", "request_params": {}}'])
    assert (row["event"]["id"], row["modelregistry"]["audit"]["delivery_id"]) == ("ev-1", "rq-1")
    (webhook,) = parse_lines("audit", [b'{"@timestamp": "2026-11-25T20:07:06Z", "entity": "model_version", '
                                       b'"action": "created", "delivery_id": "d-7", '
                                       b'"model": {"name": "m", "version": 2}}'])
    assert webhook["event"]["id"] == "d-7"
    assert webhook["message"] == "model-version-create m version 2 success"


def test_the_shipper_says_it_read_the_line() -> None:
    agent = agent_fields("host-1")
    assert agent == {"type": "regwatch", "version": version("regwatch"), "id": "host-1", "name": "host-1"}
    assert agent_fields("host-1") is agent  # one object per shipper, not one per line
    assert {f"agent.{k}" for k in agent} <= set(fields())


def test_the_probe_says_where_it_checks_from() -> None:
    up = _probe_docs()[0]
    assert up["observer"] == {"hostname": "h", "name": "h", "type": "probe", "product": "regwatch"}
    assert {f"observer.{k}" for k in up["observer"]} <= set(fields())


def test_a_node_lacking_a_module_gets_each_missing_type_degraded_to_its_nearest() -> None:
    mapping = {"properties": {"url": {"properties": {
        "original": {"type": "wildcard", "ignore_above": 1024, "fields": {"text": {"type": "match_only_text"}}}}},
        "data_stream": {"properties": {"type": {"type": "constant_keyword", "value": "logs"}}},
        "p": {"type": "scaled_float", "scaling_factor": 1000}, "k": {"type": "keyword"}}}
    degraded, changed = degrade(mapping, set(DEGRADED))
    assert degraded == {"properties": {"url": {"properties": {
        "original": {"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "text"}}}}},
        "data_stream": {"properties": {"type": {"type": "keyword"}}},
        "p": {"type": "float"}, "k": {"type": "keyword"}}}
    assert changed == {"url.original": "wildcard->keyword", "url.original.text": "match_only_text->text",
                       "data_stream.type": "constant_keyword->keyword", "p": "scaled_float->float"}
    assert degrade(mapping, set()) == (mapping, {}) and mapping["properties"]["p"]["type"] == "scaled_float"


def test_a_zone_less_uvicorn_time_is_read_in_the_inputs_zone_and_says_which() -> None:
    line = b'2026-11-25 20:07:06,123 INFO uvicorn.access: 10.0.0.5:40000 - "GET /health HTTP/1.1" 200'
    (utc,) = parse_lines("uvicorn", [line])
    assert (utc["@timestamp"], utc["event"]["timezone"]) == ("2026-11-25T20:07:06.123Z", "UTC")
    (amsterdam,) = parse_lines("uvicorn", [line], timezone="Europe/Amsterdam")
    assert (amsterdam["@timestamp"], amsterdam["event"]["timezone"]) == ("2026-11-25T19:07:06.123Z", "Europe/Amsterdam")
    zoned = line.replace(b"06,123 ", b"06,123+02:00 ")
    (said,) = parse_lines("uvicorn", [zoned], timezone="Europe/Amsterdam")
    assert said["@timestamp"] == "2026-11-25T18:07:06.123Z" and "timezone" not in said["event"]
    (no_time,) = parse_lines("uvicorn", [line.split(b" INFO ")[1]])
    assert "timezone" not in no_time["event"]


def _leaves(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [leaf for key, inner in value.items() for leaf in _leaves(inner, f"{prefix}{key}.")]
    return [prefix[:-1]]


def _result_doc() -> dict[str, Any]:
    from rules.model import RuleFile
    from rules.results import result

    (rule,) = RuleFile.model_validate({"rules": [{"name": "unusual", "type": "anomaly", "kinds": ["retrieval"],
                                                   "window": "5m", "history": "14d", "notify": []}]}).rules
    explained = {"bucket": {"start": "2026-11-25T10:00:00+00:00", "end": "2026-11-25T10:05:00+00:00"},
                 "observed": 12.0, "expected": 4.0, "lower": 1.0, "upper": 7.0, "score": 80.0, "learning": False,
                 "period_s": 86400.0}
    return result(rule, "m", explained, "default")[1]  # type: ignore[arg-type]


def test_every_field_of_every_document_kind_is_mapped() -> None:
    """The streams map with ``dynamic: false``: a field a document carries and the mapping lacks is
    kept in _source but can be neither searched nor aggregated. Every kind the rooms write: parsed
    lines of every format, dead letters, probe checks and resources, anomaly results."""
    mapped = set(fields())
    deadletters = parse_lines("nginx", [b"not an access line\n", b'{"json": "in the wrong format"}\n'])
    docs = sample_docs() + deadletters + _probe_docs() + [_result_doc()]
    unmapped = {leaf for doc in docs for leaf in _leaves(doc) if leaf not in mapped}
    assert unmapped == set()
