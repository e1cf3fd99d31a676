"""The built-in audit-trail heartbeat (rules/builtin/audit/heartbeat.yaml) on a real node: registry writes
in the access log with no audit record fire it; writes arriving from both sources keep it quiet.
The events are the parsers' own documents of an nginx access line and of the audit record the
receiver writes for MLflow's delivery, indexed with controlled ingest times."""

from __future__ import annotations

import json
import time
from pathlib import Path

from elasticsearch import Elasticsearch

from contract.streams import data_stream_name
from parsers import LineParser, ParseContext, kind_of
from parsers.mlflow_webhook import canonical_record
from rules.model import load_rules
from rules.runner import Runner
from support.rules import T0, Receiver

BUILTIN = Path(__file__).resolve().parent.parent / "rules" / "builtin" / "audit"  # rules.folders: builtin/audit


def access_line(at: float, n: int) -> bytes:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
    return (f'10.0.0.5 - - [{stamp}] "POST /api/2.0/mlflow/registered-models/create HTTP/1.1" 200 120 "-" '
            f'"mlflow-python-client/3.17.2" rt=0.0{n % 10} uct="0.000" urt="0.0{n % 10}"').encode()


def audit_line(at: float, n: int) -> bytes:
    body = json.dumps({"entity": "registered_model", "action": "created",
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at)),
                       "data": {"name": f"model-{n}", "tags": {}, "description": None}}).encode()
    record = canonical_record(body, f"delivery-{n}")
    assert record is not None
    return json.dumps(record).encode()


def index_writes(es: Elasticsearch, namespace: str, start: float, minutes: int, audited: bool) -> None:
    """One registration a minute seen by the access log, and by the audit trail when ``audited``."""
    access = LineParser(ParseContext(namespace=namespace, format="nginx"))
    audit = LineParser(ParseContext(namespace=namespace, format="audit"))
    operations: list[dict] = []
    for n in range(minutes):
        at = start + 60 * n + 5
        lines = [(access, access_line(at, n))] + ([(audit, audit_line(at, n))] if audited else [])
        for parser, line in lines:
            doc = parser.parse(line)
            assert "error" not in doc.get("event", {}).get("kind", ""), doc
            doc["event"]["ingested"] = int((at + 1) * 1000)
            operations += [{"create": {"_index": data_stream_name(kind_of(doc), namespace)}}, doc]
    es.bulk(operations=operations, refresh=True)


def run_minutes(es: Elasticsearch, namespace: str, webhook, start: float, minutes: int) -> list[tuple]:
    rules = [rule for rule in load_rules(BUILTIN) if rule.name == "audit-trail-silent"]
    assert rules, "the built-in rules hold the audit trail's heartbeat"
    runner = Runner(es, rules, namespace, webhook, "heartbeat")
    transitions: list[tuple] = []
    for n in range(1, minutes + 1):
        transitions += runner.cycle(now=start + 60 * n + 30).transitions
    return transitions


def test_writes_without_audit_records_fire_the_heartbeat(es: Elasticsearch, namespace: str, webhook) -> None:
    index_writes(es, namespace, T0, 12, audited=False)
    transitions = run_minutes(es, namespace, webhook, T0, 12)
    assert ("audit-trail-silent", "*", "pending") in transitions
    assert ("audit-trail-silent", "*", "firing") in transitions
    assert [p["state"] for p, _ in Receiver.received] == []  # notify: [] (the dashboards only)


def test_writes_with_their_audit_records_keep_it_quiet(es: Elasticsearch, namespace: str, webhook) -> None:
    index_writes(es, namespace, T0, 12, audited=True)
    assert run_minutes(es, namespace, webhook, T0, 12) == []


def test_a_quiet_registry_keeps_it_quiet(es: Elasticsearch, namespace: str, webhook) -> None:
    assert run_minutes(es, namespace, webhook, T0, 8) == []
