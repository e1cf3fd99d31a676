"""A cycle's searches packed (rules.packing): rules reading the same streams over the same window
share one search, each measured exactly as its own search would measure it; a search that reads
events goes alone; a packed search the node refuses is asked again rule by rule, so a rule that
fails fails alone."""

from __future__ import annotations

from typing import Any

from rules.packing import Slot, msearch, pack, unpack
from rules.query import Window, header
from rules.types import measure, request
from support.rules import T0, Requests, index_events, write_rules

WINDOW = {"range": {"event.ingested": {"gte": 1, "lt": 2}}}
HEADER = {"index": "logs-modelregistry.error-x", "ignore_unavailable": True, "allow_no_indices": True}


def body(*own: dict[str, Any], aggs: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [WINDOW, *own]}}}
    if aggs:
        out["aggs"] = aggs
    return out


def test_searches_of_one_stream_set_and_window_are_one_search_each_rule_a_filter_aggregation() -> None:
    terms = {"groups": {"terms": {"field": "user.name", "size": 10}}}
    events = {"size": 5, "sort": [{"@timestamp": "desc"}], "query": {"bool": {"filter": [WINDOW]}}}
    other = {**HEADER, "index": "logs-modelregistry.access-x"}
    searches = [(HEADER, body(aggs=terms)), (HEADER, events), (HEADER, body({"term": {"a": 1}})),
                (other, body(aggs=terms)), (HEADER, {**body(aggs=terms), "track_total_hits": False}),
                (HEADER, events)]
    packed, slots = pack(searches)
    assert packed == [
        (HEADER, {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [WINDOW]}}, "aggs": {
            "r0": {"filter": {"match_all": {}}, "aggs": terms},
            "r1": {"filter": {"bool": {"filter": [{"term": {"a": 1}}]}}}}}),
        (HEADER, events),  # reads events: alone
        (other, body(aggs=terms)),  # another stream: alone, unchanged
        (HEADER, {**body(aggs=terms), "track_total_hits": False}),  # asks otherwise: alone
    ]
    assert slots == [Slot(0, "r0", True), Slot(1), Slot(0, "r1", False), Slot(2), Slot(3),
                     Slot(1)]  # the same search twice: asked once


def test_a_packed_answer_is_given_back_as_each_rules_own() -> None:
    answer = {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
              "hits": {"total": {"value": 9, "relation": "eq"}, "max_score": None, "hits": []},
              "aggregations": {"r0": {"doc_count": 7, "groups": {"buckets": [{"key": "u", "doc_count": 7}]}},
                               "r1": {"doc_count": 2}}}
    shards = answer["_shards"]
    assert unpack(answer, Slot(0, "r0", True)) == {
        "took": 3, "timed_out": False, "_shards": shards,
        "hits": {"total": {"value": 7, "relation": "eq"}, "max_score": None, "hits": []},
        "aggregations": {"groups": {"buckets": [{"key": "u", "doc_count": 7}]}}}
    assert unpack(answer, Slot(0, "r1", False)) == {
        "took": 3, "timed_out": False, "_shards": shards,
        "hits": {"total": {"value": 2, "relation": "eq"}, "max_score": None, "hits": []}}
    none = {"took": 1, "timed_out": False, "_shards": {"total": 0}, "hits": {"total": {"value": 0}, "hits": []}}
    assert unpack(none, Slot(0, "r0", True)) == {  # no index at all: no aggregations, as alone
        "took": 1, "timed_out": False, "_shards": {"total": 0},
        "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}}
    assert unpack({"error": {"type": "x"}, "status": 400}, Slot(0, "r0", True)) is None  # asked alone then
    partial = answer | {"_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 1}}
    assert unpack(partial, Slot(0, "r1", False)) is None  # a shard missing from every member's count: alone too
    assert unpack({"error": {"type": "x"}, "status": 400}, Slot(1)) == {"error": {"type": "x"}, "status": 400}


MIX = """
rules:
  - {name: errors, type: threshold, kinds: [error], window: 5m, interval: 1m, condition: {op: '>', value: 3},
     notify: []}
  - {name: errors-bob, type: threshold, kinds: [error], filter: 'user.name:bob', window: 5m, interval: 1m,
     condition: {op: '>', value: 3}, notify: []}
  - {name: errors-by-user, type: threshold, kinds: [error], group_by: user.name, window: 5m, interval: 1m,
     condition: {op: '>', value: 3}, notify: []}
  - {name: errors-by-model, type: threshold, kinds: [error], kql: 'user.name : (alice or bob)',
     group_by: [modelregistry.model.name, user.name], window: 5m, interval: 1m, condition: {op: '>', value: 1},
     notify: []}
  - {name: p95, type: threshold, kinds: [retrieval], group_by: modelregistry.model.name, window: 5m, interval: 1m,
     aggregate: {function: max, field: event.duration}, condition: {op: '>', value: 1e9}, notify: []}
  - {name: ratio, type: ratio, kinds: [retrieval, error], numerator: 'event.outcome:failure', window: 5m,
     interval: 1m, condition: {op: '>', value: 0.05}, notify: []}
  - {name: ratio-2, type: ratio, kinds: [retrieval, error], numerator: 'user.name:bob', window: 5m,
     interval: 1m, condition: {op: '>', value: 0.05}, notify: []}
  - {name: absent, type: absence, kinds: [registration], window: 5m, interval: 1m, minimum: 1, notify: []}
  - {name: absent-2, type: absence, kinds: [registration], window: 5m, interval: 1m, minimum: 3, notify: []}
  - {name: spike, type: spike, kinds: [retrieval], window: 5m, interval: 1m, factor: 3, notify: []}
  - {name: spike-2, type: spike, kinds: [retrieval], group_by: user.name, window: 5m, interval: 1m, factor: 2,
     notify: []}
  - {name: users, type: new_term, kinds: [retrieval], field: user.name, window: 5m, interval: 1m, lookback: 7d,
     notify: []}
  - {name: users-2, type: new_term, kinds: [retrieval], field: modelregistry.model.name, window: 5m, interval: 1m,
     lookback: 7d, notify: []}
  - {name: versions, type: change, kinds: [retrieval], group_by: user.name, field: modelregistry.model.name,
     window: 5m, interval: 1m, notify: []}
  - {name: versions-2, type: change, kinds: [retrieval], group_by: modelregistry.model.name, field: user.name,
     window: 5m, interval: 1m, notify: []}
  - {name: deletes, type: match, kinds: [error], terms: {user.name: bob}, interval: 1m, notify: []}
"""


def test_each_rule_measures_the_same_packed_as_alone_on_a_real_node(es, es_url, namespace, tmp_path) -> None:
    rules = write_rules(tmp_path, MIX)
    for minute, (user, model) in enumerate([("alice", "m1"), ("bob", "m2"), ("carol", "m1"), ("bob", "m3")]):
        for kind in ("error", "retrieval"):
            index_events(es, namespace, kind, T0 - 240 + 60 * minute, 2 + minute, user=user, model=model)
    index_events(es, namespace, "retrieval", T0 - 3 * 86400, 3, user="alice", model="m1")  # known before
    window = Window(T0 - 300, T0)
    searches = [(header(rule, namespace), request(rule, window)) for rule in rules]
    requests = Requests()
    packed = msearch(requests.client(es_url, request_timeout=60), searches)
    alone = es.msearch(searches=[part for search in searches for part in search])["responses"]
    assert requests.paths == [("POST", "/_msearch")]
    assert len(pack(searches)[0]) == 8  # 16 rules: 6 searches of 2-4 rules, the max alone, the match rule alone
    for rule, mine, own in zip(rules, packed, alone, strict=True):
        assert measure(rule, mine, window) == measure(rule, own, window), rule.name
    measured = {rule.name: measure(rule, mine, window) for rule, mine in zip(rules, packed, strict=True)}
    assert [(m.group, m.value) for m in measured["errors-by-user"]] == [("bob", 8.0), ("carol", 4.0), ("alice", 2.0)]
    assert [(m.group, m.value) for m in measured["errors-bob"]] == [("*", 8.0)]


def test_a_query_the_node_refuses_fails_its_rule_alone(es, es_url, namespace, tmp_path) -> None:
    rules = write_rules(tmp_path, """
rules:
  - {name: fine, type: threshold, kinds: [error], window: 60s, interval: 60s, condition: {op: '>', value: 1},
     notify: []}
  - {name: broken, type: threshold, kinds: [error], filter: 'user.name:(', window: 60s, interval: 60s,
     condition: {op: '>', value: 1}, notify: []}
  - {name: fine-too, type: threshold, kinds: [error], filter: 'user.name:alice', window: 60s, interval: 60s,
     condition: {op: '>', value: 1}, notify: []}
""")
    index_events(es, namespace, "error", T0 - 30, 4, user="alice")
    window = Window(T0 - 60, T0)
    searches = [(header(rule, namespace), request(rule, window)) for rule in rules]
    requests = Requests()
    fine, broken, fine_too = msearch(requests.client(es_url, request_timeout=60), searches)
    assert requests.paths == [("POST", "/_msearch")] * 2  # packed, refused; then each alone
    assert "error" in broken and "error" not in fine and "error" not in fine_too
    assert [(m.group, m.value) for m in measure(rules[0], fine, window)] == [("*", 4.0)]
    assert [(m.group, m.value) for m in measure(rules[2], fine_too, window)] == [("*", 4.0)]


BIG = """
rules:
  - {name: all, type: threshold, kinds: [error], window: 5m, interval: 1m, condition: {op: '>', value: 1},
     notify: []}
  - {name: alice, type: threshold, kinds: [error], filter: 'user.name:alice', window: 5m, interval: 1m,
     condition: {op: '>', value: 1}, notify: []}
  - {name: p95, type: threshold, kinds: [error], window: 5m, interval: 1m,
     aggregate: {function: percentile, field: event.duration, percentile: 95}, condition: {op: '>', value: 1},
     notify: []}
  - {name: users, type: threshold, kinds: [error], window: 5m, interval: 1m,
     aggregate: {function: cardinality, field: user.name}, condition: {op: '>', value: 1}, notify: []}
  - {name: avg-by-model, type: threshold, kinds: [error], group_by: modelregistry.model.name, window: 5m,
     interval: 1m, aggregate: {function: avg, field: event.duration}, condition: {op: '>', value: 1}, notify: []}
  - {name: by-user, type: threshold, kinds: [error], group_by: user.name, window: 5m, interval: 1m,
     condition: {op: '>', value: 1}, notify: []}
  - {name: by-timestamp, type: threshold, kinds: [error], time_field: '@timestamp', window: 5m, interval: 1m,
     condition: {op: '>', value: 1}, notify: []}
"""


def test_past_ten_thousand_documents_every_aggregate_is_the_same_packed_as_alone(es, es_url, namespace,
                                                                                  tmp_path) -> None:
    """Counts above 10,000 are exact both ways (track_total_hits), and a percentile, a cardinality, an
    average by group and the terms of a group measure the same inside a filter aggregation; a rule on
    another time field is another search."""
    rules = write_rules(tmp_path, BIG)
    operations: list[dict[str, Any]] = []
    for n in range(12_345):
        operations += [{"create": {"_index": f"logs-modelregistry.error-{namespace}"}}, {
            "@timestamp": int((T0 - 200 + n % 150) * 1000),
            "event": {"ingested": int((T0 - 250 + n % 200) * 1000), "duration": (n * 7919) % 1_000_003,
                      "action": "artifact-download", "outcome": "failure"},
            "modelregistry": {"model": {"name": f"m{n % 13}"}}, "user": {"name": f"u{n % 37}" if n % 5 else "alice"}}]
    for at in range(0, len(operations), 5000):
        es.bulk(operations=operations[at:at + 5000])
    es.indices.refresh(index=f"logs-modelregistry.error-{namespace}")
    window = Window(T0 - 300, T0)
    searches = [(header(rule, namespace), request(rule, window)) for rule in rules]
    assert len(pack(searches)[0]) == 2  # the rules on event.ingested share one search; @timestamp's its own
    packed = msearch(es, searches)
    alone = es.msearch(searches=[part for search in searches for part in search])["responses"]
    for rule, mine, own in zip(rules, packed, alone, strict=True):
        assert "error" not in own, own
        assert measure(rule, mine, window) == measure(rule, own, window), rule.name
    measured = {rule.name: measure(rule, mine, window) for rule, mine in zip(rules, packed, strict=True)}
    assert [(m.group, m.value) for m in measured["all"]] == [("*", 12_345.0)]
    assert [(m.group, m.value) for m in measured["by-timestamp"]] == [("*", 12_345.0)]
    assert [(m.group, m.value) for m in measured["alice"]] == [("*", 2469.0)]
    assert [(m.group, m.value) for m in measured["users"]] == [("*", 38.0)]  # u0-u36 and alice


def test_anomaly_rules_of_one_history_measure_the_same_packed_as_alone(es, namespace, tmp_path) -> None:
    """Their date histograms (extended bounds, empty buckets) inside a filter aggregation are the
    same buckets as in their own searches."""
    rules = write_rules(tmp_path, """
rules:
  - {name: odd, type: anomaly, kinds: [error], window: 5m, history: 2d, notify: []}
  - {name: odd-bob, type: anomaly, kinds: [error], filter: 'user.name:bob', window: 5m, history: 2d, notify: []}
""")
    for hour in range(0, 47, 3):
        index_events(es, namespace, "error", T0 - 3600 * hour - 100, 1 + hour % 4, user="bob" if hour % 2 else "al")
    window = Window(T0 - 300, T0)
    searches = [(header(rule, namespace), request(rule, window)) for rule in rules]
    assert len(pack(searches)[0]) == 1
    packed = msearch(es, searches)
    alone = es.msearch(searches=[part for search in searches for part in search])["responses"]
    for rule, mine, own in zip(rules, packed, alone, strict=True):
        assert "error" not in own, own
        assert measure(rule, mine, window) == measure(rule, own, window), rule.name
