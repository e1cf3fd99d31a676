"""The registry at a glance, from Elasticsearch: what ``regwatch top`` shows.

One ``_msearch`` per refresh (events, availability, alert state, anomaly results), over the last ``minutes``:
operations per kind per minute, the error ratio of registry calls, p50/p95 latency, availability
per probe target, the busiest models, firing alerts, the highest current anomaly scores (each
rule and group's newest result of the last :data:`ANOMALY_LOOKBACK`: a result is written per
bucket, an hour long perhaps), notifiers that fail, and the shipper's lag
(how old the newest line was when Elasticsearch got it, and how long ago that was). Windows select on ``@timestamp``
here: this is a view of what happened when, not an alert that must count late data once.

As the built-in rules and the dashboards count them: the probe's own requests
(``modelregistry.synthetic``) are left out unless asked for, and the error ratio counts the
failures that mean something is wrong (``modelregistry.failure``: server, auth, throttled), not a
client's 404 on a lookup; and an action both the access log and the audit trail recorded is
counted once (``contract.traffic``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from contract import streams
from contract.traffic import COUNTED_FAILURES, FAILURE_FIELD, SYNTHETIC_FIELD
from rules.query import SOURCES, actions
from rules.states import ACTIVE

REGISTRY_KINDS = ("registration", "retrieval", "version", "error")
ANOMALY_LOOKBACK = "2d"  # a series whose newest result is older than this is not "current"
ANOMALY_SERIES = 500  # rule and group pairs read; the top ones shown
TOP_ANOMALIES = 10
RESULTS = streams.dataset("anomaly")


@dataclass
class Overview:
    minutes: int
    per_minute: dict[str, list[int]] = field(default_factory=dict)  # kind -> counts, oldest minute first
    calls: int = 0
    failures: int = 0  # 5xx, 401, 403, 429: what the registry-error-ratio rule counts
    synthetic: bool = False  # the probe's own requests are counted too
    p50_ms: float | None = None
    p95_ms: float | None = None
    availability: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> up ratio, last state
    models: dict[str, int] = field(default_factory=dict)
    firing: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)  # newest result per rule and group, top score first
    newest_ingested_s_ago: float | None = None
    newest_delay_s: float | None = None
    notifiers: list[NotifierHealth] = field(default_factory=list)  # those with no success lately

    @property
    def error_ratio(self) -> float | None:
        return self.failures / self.calls if self.calls else None


@dataclass(frozen=True)
class NotifierHealth:
    """A notifier whose sends fail, as the runners recorded it (``notifier:<name>`` documents)."""

    target: str
    failing_since: float  # its first failure since its last success
    failing_for: float  # seconds, at the time of reading
    failing: bool  # for at least ``rules.notifier_failing_after_s``: the notifier-failing alert is due
    last_error: str | None
    failures: int
    dropped: int  # notifications it refused for good (not retried)

    def line(self) -> str:
        """One line for ``regwatch rules status``."""
        mark = "FAILING" if self.failing else "retrying"
        return (f"notifier {self.target} {mark} for {self.failing_for:.0f}s failures={self.failures} "
                f"dropped={self.dropped} last_error={self.last_error or '-'}")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def notifier_health(documents: list[dict[str, Any]], failing_after: float, now: float) -> list[NotifierHealth]:
    """The notifiers that have failed since their last success, oldest failure first."""
    out = []
    for doc in documents:
        since = doc.get("failing_since")
        # A state document is written by the runners, but anyone with write access to the index could
        # forge one: a failing_since that is not a number is not a notifier we can say anything of.
        if doc.get("type") != "notifier" or not isinstance(since, int | float) or isinstance(since, bool):
            continue
        out.append(NotifierHealth(target=str(doc.get("target")), failing_since=since, failing_for=max(0.0, now - since),
                                  failing=now - since >= failing_after,
                                  last_error=None if doc.get("last_error") is None else str(doc["last_error"]),
                                  failures=_count(doc.get("failures")), dropped=_count(doc.get("dropped"))))
    return sorted(out, key=lambda n: n.failing_since)


def failing_notifiers(client: Elasticsearch, namespace: str, failing_after: float,
                      now: float | None = None) -> list[NotifierHealth]:
    """:func:`notifier_health` read from the alert-state index of ``namespace``."""
    now = time.time() if now is None else now
    index = f"regwatch-alert-state-{namespace}"
    found = client.search(index=index, size=1000, ignore_unavailable=True, allow_no_indices=True,
                          query={"term": {"type": "notifier"}})
    return notifier_health([hit["_source"] for hit in found["hits"]["hits"]], failing_after, now)


def _range(field_name: str, minutes: int) -> dict[str, Any]:
    return {"range": {field_name: {"gte": f"now-{minutes}m/m"}}}


def requests(namespace: str, minutes: int, synthetic: bool = False) -> list[dict[str, Any]]:
    """The msearch body: header and request per question. ``synthetic``: the probe's requests too."""
    events = streams.pattern(namespace)
    availability = streams.pattern(namespace, "availability", "metrics")
    state = f"regwatch-alert-state-{namespace}"
    kinds = [streams.dataset(k) for k in REGISTRY_KINDS]
    window: dict[str, Any] = {"bool": {"filter": [_range("@timestamp", minutes)]}}
    if not synthetic:
        window["bool"]["must_not"] = [{"term": {SYNTHETIC_FIELD: True}}]
    per_minute = {
        "size": 0, "query": window,
        "aggs": {
            "minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 0,
                                          "extended_bounds": {"min": f"now-{minutes - 1}m/m", "max": "now/m"}},
                       "aggs": {"kind": {"terms": {"field": "data_stream.dataset", "size": 10}, "aggs": SOURCES}}},
            "calls": {"filter": {"terms": {"data_stream.dataset": kinds}},
                      "aggs": {**SOURCES,
                               "failed": {"filter": {"terms": {FAILURE_FIELD: list(COUNTED_FAILURES)}},
                                          "aggs": SOURCES},
                               "latency": {"percentiles": {"field": "event.duration", "percents": [50, 95]}},
                               # by actions, most first (a terms order cannot sort by a max of two
                               # counts): the 20 most recorded, of which the 5 with most actions
                               "models": {"terms": {"field": "modelregistry.model.name", "size": 20},
                                          "aggs": SOURCES}}},
            # what the shippers sent: not the anomaly results (their @timestamp is a bucket's start)
            "newest": {"filter": {"bool": {"must_not": [{"term": {"data_stream.dataset": RESULTS}}]}},
                       "aggs": {"hit": {"top_hits": {"size": 1, "sort": [{"event.ingested": {"order": "desc",
                                                                                             "unmapped_type": "date"}}],
                                                     "_source": ["@timestamp", "event.ingested"]}}}},
        },
    }
    health = {
        "size": 0, "query": {"bool": {"filter": [_range("@timestamp", minutes),
                                                 {"term": {"modelregistry.probe.check": "health"}}]}},
        "aggs": {"target": {"terms": {"field": "modelregistry.probe.target", "size": 20},
                            "aggs": {"up": {"filter": {"term": {"modelregistry.probe.up": True}}},
                                     "last": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}],
                                                           "_source": ["modelregistry.probe.up", "error.type"]}}}}},
    }
    firing = {"size": 100,
              "query": {"bool": {"filter": [{"term": {"type": "alert"}}, {"terms": {"state": list(ACTIVE)}}]}},
              "_source": ["rule", "group", "state", "since", "value"]}
    header = {"ignore_unavailable": True, "allow_no_indices": True}
    notifiers = {"size": 100, "query": {"term": {"type": "notifier"}}}
    anomalies = {
        "size": 0, "query": {"range": {"@timestamp": {"gte": f"now-{ANOMALY_LOOKBACK}"}}},
        # composite, not multi_terms: the latter is a licensed module some nodes lack
        "aggs": {"series": {"composite": {"sources": [{"rule": {"terms": {"field": "modelregistry.anomaly.rule"}}},
                                                      {"group": {"terms": {"field": "modelregistry.anomaly.group"}}}],
                                          "size": ANOMALY_SERIES},
                            "aggs": {"newest": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}],
                                                             "_source": ["@timestamp", "modelregistry.anomaly"]}}}}},
    }
    return [{"index": events, **header}, per_minute, {"index": availability, **header}, health,
            {"index": state, **header}, firing, {"index": state, **header}, notifiers,
            {"index": streams.pattern(namespace, "anomaly"), **header}, anomalies]


def top_anomalies(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The newest result of each rule and group, highest score first (then rule, group): what
    is unusual now, alerting or not."""
    out = []
    for bucket in (response.get("aggregations") or {}).get("series", {}).get("buckets", []):
        hit = bucket["newest"]["hits"]["hits"][0]["_source"]
        found = hit.get("modelregistry", {}).get("anomaly", {})
        score = found.get("score")
        if not isinstance(score, int | float) or isinstance(score, bool):
            continue  # a damaged or forged document says nothing we can rank
        out.append({"rule": str(found.get("rule", "")), "group": str(found.get("group", "")), "score": float(score),
                    "actual": found.get("actual"), "expected": found.get("expected"), "lower": found.get("lower"),
                    "upper": found.get("upper"), "learning": bool(found.get("learning")),
                    "bucket": hit.get("@timestamp")})
    out.sort(key=lambda a: (-a["score"], a["rule"], a["group"]))
    return out[:TOP_ANOMALIES]


def read(client: Elasticsearch, namespace: str = "*", minutes: int = 5, now: float | None = None,
         notifier_failing_after: float = 600.0, synthetic: bool = False) -> Overview:
    now = time.time() if now is None else now
    found = client.msearch(searches=requests(namespace, minutes, synthetic))["responses"]
    view = Overview(minutes, synthetic=synthetic)
    events, health, state, notifiers, anomalies = found
    for response in found:
        if "error" in response and response.get("status") != 404:
            raise RuntimeError(f"overview query failed: {response['error'].get('reason') or response['error']}")
    aggs = events.get("aggregations")
    if aggs:
        minutes_seen = aggs["minute"]["buckets"][-minutes:]
        kinds = sorted({streams.kind_of_dataset(k["key"]) for b in minutes_seen for k in b["kind"]["buckets"]}
                       & {*streams.EVENT_KINDS, "deadletter"})
        view.per_minute = {kind: [next((actions(k, k["doc_count"]) for k in b["kind"]["buckets"]
                                        if streams.kind_of_dataset(k["key"]) == kind), 0) for b in minutes_seen]
                           for kind in kinds}
        calls = aggs["calls"]
        view.calls = actions(calls, calls["doc_count"])
        view.failures = actions(calls["failed"], calls["failed"]["doc_count"])
        values = calls["latency"]["values"]
        view.p50_ms = values.get("50.0") / 1e6 if values.get("50.0") is not None else None
        view.p95_ms = values.get("95.0") / 1e6 if values.get("95.0") is not None else None
        by_model = sorted(((actions(b, b["doc_count"]), b["key"]) for b in calls["models"]["buckets"]),
                          key=lambda pair: (-pair[0], pair[1]))
        view.models = {name: count for count, name in by_model[:5]}
        hits = aggs["newest"]["hit"]["hits"]["hits"]
        if hits and "event" in hits[0]["_source"]:
            source = hits[0]["_source"]
            ingested = _epoch(source["event"]["ingested"])
            view.newest_ingested_s_ago = max(0.0, now - ingested)
            view.newest_delay_s = max(0.0, ingested - _epoch(source["@timestamp"]))
    for bucket in (health.get("aggregations") or {}).get("target", {}).get("buckets", []):
        last = bucket["last"]["hits"]["hits"][0]["_source"]
        view.availability[bucket["key"]] = {"up_ratio": bucket["up"]["doc_count"] / bucket["doc_count"],
                                            "checks": bucket["doc_count"],
                                            "up_now": bool(last.get("modelregistry", {}).get("probe", {}).get("up")),
                                            "reason": last.get("error", {}).get("type")}
    view.firing = [hit["_source"] for hit in (state.get("hits") or {}).get("hits", [])]
    view.anomalies = top_anomalies(anomalies)
    view.notifiers = notifier_health([hit["_source"] for hit in (notifiers.get("hits") or {}).get("hits", [])],
                                     notifier_failing_after, now)
    return view


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
