"""The demo's summary: what the workload did against what Elasticsearch holds, the audit trail,
the alerts with their times. Numbers only; the CLI draws them.

The workload's requests are told apart by the run tag in their User-Agent; each is given the kind
the route table says it is (``parsers.routes``, an error when it failed), so the comparison is
kind by kind and action by action. Everything else is counted from the run's start.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from contract import streams
from parsers.events import event_kind
from parsers.routes import builtin
from regwatch.demo.history import USER_AGENT
from regwatch.demo.stack import anomaly_rule_names
from regwatch.demo.webhook_sink import received
from regwatch.demo.workload import read_truth
from rules.usage import downloads_rows, downloads_search, per_version, retrieval_index

WRITES = {"create_model", "create_version", "set_alias", "set_version_tag"}
HISTORY_TAG = USER_AGENT.rsplit(" ", 1)[-1]  # run=history: the past's requests


def workload_side(truth: list[dict[str, Any]]) -> dict[str, Any]:
    router = builtin("mlflow")
    kinds: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    for request in (r for r in truth if r["type"] == "request"):
        route, _ = router.http(request["method"], request["path"])
        kind = event_kind(route, request["status"] >= 400)
        kinds[kind] += 1
        actions[f"{kind}/{route.action}"] += 1
    operations = [r for r in truth if r["type"] == "operation"]
    return {
        "operations": len(operations),
        "operations_failed": sum(1 for r in operations if not r["ok"]),
        "operations_by_type": dict(sorted(Counter(r["op"] for r in operations).items())),
        "requests": sum(kinds.values()),
        "by_kind": dict(sorted(kinds.items())),
        "by_action": dict(sorted(actions.items())),
        "written_models": sorted({r["model"] for r in operations if r["op"] in WRITES and r["ok"] and r["model"]}),
        "downloads_by_version": downloads_by_version(operations),
    }


def downloads_by_version(operations: list[dict[str, Any]]) -> dict[str, int]:
    """Successful artifact downloads per ``model/version``, as the workload made them."""
    found = Counter(f"{r['model']}/{r['version']}" for r in operations
                    if r["op"] == "download_artifact" and r["ok"] and r.get("version"))
    return dict(sorted(found.items()))


def _terms(es: Elasticsearch, index: str, query: dict[str, Any], field: str, size: int = 200) -> dict[str, int]:
    response = es.search(index=index, size=0, query=query, aggs={"t": {"terms": {"field": field, "size": size}}})
    return {str(b["key"]): b["doc_count"] for b in response["aggregations"]["t"]["buckets"]}


def elasticsearch_side(es: Elasticsearch, namespace: str, run_id: str, since: float) -> dict[str, Any]:
    pattern = streams.pattern(namespace)
    es.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
    ours = {"wildcard": {"user_agent.original": {"value": f"*run={run_id}"}}}
    from_run = {"range": {"event.ingested": {"gte": int(since * 1000), "format": "epoch_millis"}}}
    response = es.search(index=pattern, size=0, query=ours, aggs={
        "kind": {"terms": {"field": "data_stream.dataset", "size": 20},
                 "aggs": {"action": {"terms": {"field": "event.action", "size": 200}}}}})
    by_kind: dict[str, int] = {}
    by_action: dict[str, int] = {}
    for bucket in response["aggregations"]["kind"]["buckets"]:
        kind = streams.kind_of_dataset(bucket["key"])
        by_kind[kind] = bucket["doc_count"]
        for action in bucket["action"]["buckets"]:
            by_action[f"{kind}/{action['key']}"] = action["doc_count"]
    downloads = {"bool": {"filter": [ours, {"term": {"event.action": "artifact-download"}},
                                     {"term": {"event.outcome": "success"}}]}}
    how = es.search(index=pattern, size=0, query=downloads, aggs={
        "how": {"terms": {"field": "modelregistry.attribution", "size": 20, "missing": "none"}}})["aggregations"]
    rows, unnamed = downloads_rows(dict(es.search(index=retrieval_index(namespace), **downloads_search(since))))
    totals = per_version(rows)
    audit = {"bool": {"filter": [from_run, {"term": {"modelregistry.format": "audit"}}]}}
    past = {"wildcard": {"user_agent.original": {"value": f"*{HISTORY_TAG}"}}}
    others = {"bool": {"filter": [from_run], "must_not": [ours, past, {"term": {"modelregistry.format": "audit"}}]}}
    return {
        "pattern": pattern,
        "by_kind": dict(sorted(by_kind.items())),
        "by_action": dict(sorted(by_action.items())),
        # as `regwatch downloads` counts them: whole models (MLmodel fetches) and files, per version
        "downloads_by_version": {f"{t.model}/{t.version}": t.downloads for t in totals},
        "files_by_version": {f"{t.model}/{t.version}": t.files for t in totals},
        "downloads_unnamed": unnamed,
        "files_attribution": {str(b["key"]): b["doc_count"] for b in how["how"]["buckets"]},
        "history_events": es.count(index=pattern, query=past)["count"],
        "audit_events": es.count(index=pattern, query=audit)["count"],
        "audit_models": _terms(es, pattern, audit, "modelregistry.model.name"),
        "audit_actions": _terms(es, pattern, audit, "event.action"),
        "other_clients": _terms(es, pattern, others, "data_stream.dataset"),
        "deadletters": es.count(index=streams.data_stream_name("deadletter", namespace), ignore_unavailable=True,
                                query=from_run)["count"],
        "availability_checks": _terms(es, streams.data_stream_name("availability", namespace),
                                      {"bool": {"filter": [{"range": {"@timestamp": {"gte": int(since * 1000),
                                                                                       "format": "epoch_millis"}}},
                                                           {"term": {"modelregistry.probe.check": "health"}}]}},
                                      "modelregistry.probe.up"),
    }


def alerts(notifications: Path, since: float) -> list[dict[str, Any]]:
    """Each notification the webhook receiver got: rule, group, state, seconds after the start."""
    found = []
    for record in received(notifications):
        payload = record["payload"]
        found.append({"rule": payload.get("rule"), "group": payload.get("group"), "state": payload.get("state"),
                      "after_s": round(record["received"] - since, 1), "key": record.get("key"),
                      "message": payload.get("message")})
    return found


def anomalies(notifications: Path, since: float) -> list[dict[str, Any]]:
    """The anomaly rules' notifications: rule, state, seconds after the start, and what the
    detector saw (observed, expected, band, score) for the bucket it judged."""
    names = set(anomaly_rule_names())
    found = []
    for record in received(notifications):
        payload = record["payload"]
        if payload.get("rule") in names:
            seen = payload.get("event") or {}
            found.append({"rule": payload["rule"], "state": payload.get("state"),
                          "after_s": round(record["received"] - since, 1),
                          **{k: seen.get(k) for k in ("observed", "expected", "lower", "upper", "score", "bucket")}})
    return found


def summarise(es: Elasticsearch, namespace: str, run_id: str, since: float, truth_path: Path,
              notifications: Path, timeline: list[dict[str, Any]], front: str,
              history: dict[str, Any] | None = None) -> dict[str, Any]:
    work = workload_side(read_truth(truth_path))
    stored = elasticsearch_side(es, namespace, run_id, since)
    kinds = sorted(set(work["by_kind"]) | set(stored["by_kind"]))
    return {
        "namespace": namespace,
        "run_id": run_id,
        "front": front,
        "workload": work,
        "elasticsearch": stored,
        "kinds": {k: {"workload": work["by_kind"].get(k, 0), "elasticsearch": stored["by_kind"].get(k, 0)}
                  for k in kinds},
        "match": work["by_kind"] == stored["by_kind"] and work["by_action"] == stored["by_action"],
        "downloads_match": work["downloads_by_version"] == stored["downloads_by_version"],
        "audit_missing_models": sorted(set(work["written_models"]) - set(stored["audit_models"])),
        "alerts": alerts(notifications, since),
        "anomalies": anomalies(notifications, since),
        "history": history or {},
        "timeline": timeline,
    }


def queries(es_url: str, namespace: str) -> list[tuple[str, str]]:
    """Three questions to paste into a shell, with the node's URL (never its credentials)."""
    from contract.secrets import redact_userinfo

    base = redact_userinfo(es_url, keep_user=True).rstrip("/")
    pattern = streams.pattern(namespace)
    header = "-H 'Content-Type: application/json'"
    return [
        ("events per kind, last hour",
         f"curl -s {header} '{base}/{pattern}/_search?size=0' -d "
         "'{\"query\":{\"range\":{\"@timestamp\":{\"gte\":\"now-1h\"}}},"
         "\"aggs\":{\"kinds\":{\"terms\":{\"field\":\"data_stream.dataset\"}}}}'"),
        ("failed calls by action and status",
         f"curl -s {header} '{base}/{pattern}/_search?size=0' -d "
         "'{\"query\":{\"term\":{\"event.outcome\":\"failure\"}},"
         "\"aggs\":{\"a\":{\"terms\":{\"field\":\"event.action\"},"
         "\"aggs\":{\"s\":{\"terms\":{\"field\":\"http.response.status_code\"}}}}}}'"),
        ("the audit trail of one model",
         f"curl -s {header} '{base}/{pattern}/_search?size=20&sort=@timestamp:desc' -d "
         "'{\"query\":{\"bool\":{\"filter\":["
         "{\"term\":{\"modelregistry.format\":\"audit\"}},"
         "{\"term\":{\"modelregistry.model.name\":\"fraud-detector\"}}]}}}'"),
    ]
