"""One registry action, two records: an access line (address, no name) and the audit trail's record
of the same write (name, no caller). Every count of actions (the rule types, ``regwatch top``,
the Kibana panels) counts it once, whichever sources are shipped, and a breakdown by a field only
one source fills counts that source (contract.traffic). The documents are the parsers' own, of
nginx lines as MLflow's client makes them and of MLflow's webhook deliveries as the receiver
stores them; the demo's test checks the same on a real MLflow."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from contract.streams import data_stream_name
from kibana.lens_query import bucket_values, lens_request, metric_values
from kibana.objects import all_objects
from parsers import LineParser, ParseContext, kind_of
from parsers.mlflow_webhook import canonical_record
from rules.model import Rule, RuleFile
from rules.overview import read
from rules.query import Window, header
from rules.types import RULE_TYPES

pytestmark = pytest.mark.elasticsearch

MINUTES = 3
# per minute: the writes both sources see, and what only the access log sees
WRITES = (("POST", "registered-models/create", ("registered_model", "created")),
          ("POST", "registered-models/create", ("registered_model", "created")),
          ("POST", "model-versions/create", ("model_version", "created")),
          ("POST", "registered-models/alias", ("model_version_alias", "created")))
LOOKUPS = 3  # alias lookups (retrievals: the access log only)


def _access(at: float, method: str, path: str, status: int = 200) -> bytes:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
    return (f'10.0.0.7 - - [{stamp}] "{method} /api/2.0/mlflow/{path} HTTP/1.1" {status} 120 "-" '
            f'"mlflow-python-client/3.17.2" rt=0.012 uct="0.000" urt="0.011"').encode()


def _audit(at: float, entity: str, action: str, name: str, n: int) -> bytes:
    data: dict[str, Any] = {"name": name}
    if entity == "model_version":
        data.update(version="1", source="models:/m-1", run_id="abcd1234abcd5678", tags={}, description=None)
    elif entity == "model_version_alias":
        data.update(alias="champion", version="1")
    else:
        data.update(tags={}, description=None)
    body = json.dumps({"entity": entity, "action": action,
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at)), "data": data})
    record = canonical_record(body.encode(), f"delivery-{n}")
    assert record is not None
    return json.dumps(record).encode()


def index_traffic(es: Elasticsearch, namespace: str, start: float, audited: bool | tuple[int, ...]) -> list[str]:
    """MINUTES minutes of writes (seen by both sources when ``audited``: every minute, or the
    minutes it lists), lookups and one 500; the models written, one per registration."""
    access = LineParser(ParseContext(namespace=namespace, format="nginx"))
    audit = LineParser(ParseContext(namespace=namespace, format="audit"))
    operations: list[dict[str, Any]] = []
    models: list[str] = []
    n = 0
    for minute in range(MINUTES):
        base = start + 60 * minute + 5
        lines: list[tuple[LineParser, bytes, float]] = []
        for i, (method, path, (entity, action)) in enumerate(WRITES):
            at = base + i
            name = f"model-{minute}-{i}"
            if entity == "registered_model":
                models.append(name)
            lines.append((access, _access(at, method, path), at))
            if audited is True or (audited and minute in audited):
                n += 1
                lines.append((audit, _audit(at, entity, action, name, n), at))
        for i in range(LOOKUPS):
            lines.append((access, _access(base + 10 + i, "GET", "registered-models/alias?name=m&alias=champion"),
                          base + 10 + i))
        lines.append((access, _access(base + 20, "GET", "registered-models/get?name=m", 500), base + 20))
        for parser, line, at in lines:
            doc = parser.parse(line)
            assert doc["event"]["kind"] == "event", doc
            doc["event"]["ingested"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(at + 1))
            operations += [{"create": {"_index": data_stream_name(kind_of(doc), namespace)}}, doc]
    result = es.bulk(operations=operations, refresh=True)
    assert not result["errors"], result
    return models


def _rule(text: str) -> Rule:
    (rule,) = RuleFile.model_validate(yaml.safe_load(text)).rules
    return rule


def _measure(es: Elasticsearch, rule: Rule, namespace: str, window: Window) -> dict[str, float]:
    kind = RULE_TYPES[rule.type]
    response = es.search(index=header(rule, namespace)["index"], ignore_unavailable=True, allow_no_indices=True,
                         **kind.request(rule, window))
    return {m.group: m.value for m in kind.measure(rule, response, window)}


REGISTRATIONS = """
rules:
  - name: registrations
    type: threshold
    kinds: [registration]
    window: 60s
    condition: {op: ">", value: 100}
    notify: []
"""


@pytest.mark.parametrize("audited", [True, False], ids=["both sources", "access log only"])
def test_each_write_is_one_action_in_every_rule_type(es: Elasticsearch, namespace: str, audited: bool) -> None:
    start = float(int(time.time() // 60 * 60) - 60 * (MINUTES + 1))
    models = index_traffic(es, namespace, start, audited)
    per_minute = [Window(start + 60 * m, start + 60 * (m + 1)) for m in range(MINUTES)]
    whole = Window(start, start + 60 * MINUTES)

    registrations = _rule(REGISTRATIONS)
    assert [_measure(es, registrations, namespace, w) for w in per_minute] == [{"*": 2.0}] * MINUTES
    # documents, as a rule that compares the sources counts them: both records of each write
    documents = registrations.model_copy(update={"count": "documents"})
    assert [_measure(es, documents, namespace, w) for w in per_minute] == [{"*": 4.0 if audited else 2.0}] * MINUTES

    # by model name: only the audit trail names a registration (the access line has no body)
    by_model = registrations.model_copy(update={"group_by": "modelregistry.model.name"})
    assert _measure(es, by_model, namespace, whole) == ({name: 1.0 for name in models} if audited else {})

    # version changes: a version created and an alias set a minute
    versions = registrations.model_copy(update={"kinds": ["version"]})
    assert _measure(es, versions, namespace, whole) == {"*": 2.0 * MINUTES}

    # the error ratio: one 500 among the minute's 8 calls (4 writes, 3 lookups, the failed one)
    ratio = _rule("""
rules:
  - name: error-ratio
    type: ratio
    kinds: [registration, retrieval, version, error]
    numerator: 'modelregistry.failure:(server OR auth OR throttled)'
    min_events: 1
    window: 60s
    condition: {op: ">", value: 0.5}
    notify: []
""")
    assert [_measure(es, ratio, namespace, w) for w in per_minute] == [{"*": pytest.approx(1 / 8)}] * MINUTES

    # absence counts actions too: 8 a minute, whichever sources
    absence = _rule("""
rules:
  - name: silent
    type: absence
    kinds: [registration, retrieval, version, error]
    window: 60s
    minimum: 1
    notify: []
""")
    assert [_measure(es, absence, namespace, w) for w in per_minute] == [{"*": 8.0}] * MINUTES


def test_top_counts_each_action_once(es: Elasticsearch, namespace: str) -> None:
    start = float(int(time.time() // 60 * 60) - 60 * MINUTES)
    index_traffic(es, namespace, start, audited=True)
    view = read(es, namespace, minutes=MINUTES + 2, synthetic=False)
    assert sum(view.per_minute["registration"]) == 2 * MINUTES
    assert sum(view.per_minute["version"]) == 2 * MINUTES
    assert sum(view.per_minute["retrieval"]) == LOOKUPS * MINUTES
    assert (view.calls, view.failures) == (8 * MINUTES, MINUTES)
    # the busiest models: the looked-up one (by the access log: 9 lookups, 3 failed calls), then the
    # written ones by the audit trail, which names them (one write each, not two), by name
    assert view.models == {"m": 12, **{f"model-0-{i}": 1 for i in range(4)}}


def _lens(lens_id: str) -> dict[str, Any]:
    return next(o for o in all_objects() if o["type"] == "lens" and o["id"] == lens_id)


def _views() -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in all_objects() if o["type"] == "index-pattern"}


def test_the_panels_count_each_action_once(es: Elasticsearch, namespace: str) -> None:
    start = float(int(time.time() // 60 * 60) - 60 * MINUTES)
    index_traffic(es, namespace, start, audited=True)
    index = f"logs-modelregistry.*-{namespace}"

    activity = _lens("regwatch-activity-over-time")
    request = lens_request(activity, _views())
    rows = bucket_values(activity, es.search(index=index, **request.body))
    per_kind: dict[str, float] = {}
    for (kind, _minute), values in rows:
        per_kind[kind] = per_kind.get(kind, 0) + (values["m0"] or 0)
    assert per_kind == {"modelregistry.registration": 2.0 * MINUTES, "modelregistry.version": 2.0 * MINUTES,
                        "modelregistry.retrieval": float(LOOKUPS * MINUTES), "modelregistry.error": float(MINUTES)}

    rate = _lens("regwatch-error-rate")
    shown = metric_values(rate, es.search(index=index, **lens_request(rate, _views()).body))["m0"]
    assert shown == pytest.approx(1 / 8)

    churn = _lens("regwatch-model-churn")
    rows = bucket_values(churn, es.search(index=f"logs-modelregistry.version-{namespace}",
                                          **lens_request(churn, _views()).body))
    by_action: dict[str, float] = {}
    for (action, _minute), values in rows:
        by_action[action] = by_action.get(action, 0) + (values["m0"] or 0)
    assert by_action == {"model-version-create": float(MINUTES), "registered-model-alias-set": float(MINUTES)}


def test_a_series_counts_actions_so_shipping_the_audit_trail_is_no_spike(es: Elasticsearch, namespace: str) -> None:
    """The audit receiver set up in the last minute: the writes are as many as before, not twice."""
    start = float(int(time.time() // 60 * 60) - 60 * (MINUTES + 1))
    index_traffic(es, namespace, start, audited=(MINUTES - 1,))
    spike = _rule("""
rules:
  - name: write-spike
    type: spike
    kinds: [registration]
    window: 60s
    factor: 1.5
    min_events: 1
    notify: []
""")
    last = Window(start + 60 * (MINUTES - 1), start + 60 * MINUTES)
    assert _measure(es, spike, namespace, last) == {"*": 1.0}
    assert _measure(es, spike.model_copy(update={"count": "documents"}), namespace, last) == {"*": 2.0}
