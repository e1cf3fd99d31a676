"""A cycle's alert writes on a real node: one bulk request for the cycle's transitions (their
history lines go with the heartbeat in the cycle's last), not a request each; a write the node
refuses fails its rule only, which takes the transition at its next cycle, notified once; a
write another runner made first is theirs to notify, once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch

from rules.runner import Runner
from rules.state import alert_id
from support.rules import T0, Receiver, Requests, index_events, write_rules

BY_USER = """
rules:
  - name: errors-by-user
    type: threshold
    kinds: [error]
    group_by: user.name
    window: 60s
    interval: 60s
    condition: {op: ">", value: 5}
    recovery: {op: "<", value: 2}
    notify: NOTIFY
  - name: many-errors
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    condition: {op: ">", value: 5}
    recovery: {op: "<", value: 2}
    notify: NOTIFY
"""


class Faults:
    """Wraps a runner's client: the next bulk that writes one of ``refused`` gets a 429 for it
    (the node's write queue full; the others are written), one that writes ``beaten`` finds it
    written first by another runner (the same document), and with ``down`` the next bulk that
    writes an alert fails as a whole (the connection lost)."""

    def __init__(self, client: Elasticsearch, other: Elasticsearch) -> None:
        self.refused: set[str] = set()
        self.beaten: set[str] = set()
        self.down = False
        self.other = other
        self.original = client.bulk
        client.bulk = self.bulk  # type: ignore[method-assign]

    def bulk(self, operations: list[dict[str, Any]], **options: Any) -> Any:
        pairs = list(zip(operations[::2], operations[1::2], strict=True))
        ids = [next(iter(action.values())).get("_id", "") for action, _ in pairs]
        if self.down and any(i.startswith("alert:") for i in ids):
            self.down = False
            raise TransportConnectionError("injected: connection lost")
        if not set(ids) & (self.refused | self.beaten):
            return self.original(operations=operations, **options)
        for (action, doc), doc_id in zip(pairs, ids, strict=True):
            if doc_id in self.beaten:
                self.other.index(index=next(iter(action.values()))["_index"], id=doc_id, document=doc, refresh=True)
        sent = [pair for pair, doc_id in zip(pairs, ids, strict=True) if doc_id not in self.refused]
        answered = iter(self.original(operations=[part for pair in sent for part in pair], **options)["items"])
        items = [{next(iter(action)): {"_id": doc_id, "status": 429, "error": {
                     "type": "es_rejected_execution_exception", "reason": "injected"}}}
                 if doc_id in self.refused else next(answered) for (action, _), doc_id in zip(pairs, ids, strict=True)]
        self.refused -= set(ids)
        self.beaten -= set(ids)
        return {"errors": True, "items": items}


def notified() -> list[tuple[str, str, str]]:
    return sorted((p["rule"], p["group"], p["state"]) for p, _ in Receiver.received)


def delivered(runner: Runner, start: float, count: int) -> None:
    """Cycles every 5 s from ``start`` (on the cycles' clock, before the rules are due again)
    until ``count`` notifications came, and two more: a cycle waits only a moment for its sends,
    those to one target go one after the other, the rest are taken by the cycles after."""
    extra = 2
    for step in range(1, 12):
        runner.cycle(now=start + 5 * step)
        if len(Receiver.received) >= count:
            extra -= 1
            if not extra:
                return


def history(es: Elasticsearch, namespace: str) -> list[tuple[str, str, str]]:
    index = f"logs-modelregistry.alert-{namespace}"
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=100)["hits"]["hits"]
    return sorted((h["_source"]["rule"]["name"], h["_source"]["modelregistry"]["alert"]["group"],
                   h["_source"]["event"]["action"]) for h in hits)


def test_a_cycle_writes_its_transitions_in_one_bulk_whatever_their_number(es, es_url, namespace, tmp_path) -> None:
    requests = Requests()
    runner = Runner(requests.client(es_url, request_timeout=60), write_rules(tmp_path, BY_USER.replace("NOTIFY", "[]")),
                    namespace, {}, "a")
    assert runner.cycle(now=T0 + 61).transitions == []  # the state index and the rules' cycles made
    for user in range(12):
        index_events(es, namespace, "error", T0 + 90, 10, user=f"u{user}")
    requests.paths.clear()
    report = runner.cycle(now=T0 + 121)
    assert sorted(report.transitions) == sorted([("errors-by-user", f"u{user}", "firing") for user in range(12)]
                                                + [("many-errors", "*", "firing")])
    assert Counter(requests.paths) == Counter({
        # the rules' cycles as this runner wrote them are not read again: no mget
        ("POST", "/_msearch"): 1,  # the state and every rule's window
        # the claims (refreshed: the search reads every write before it), the 13 alerts, and their
        # 13 history lines with the heartbeat; no notification to claim (notify: [])
        ("PUT", "/_bulk"): 3,
    })
    assert history(es, namespace) == sorted([("errors-by-user", f"u{user}", "firing") for user in range(12)]
                                            + [("many-errors", "*", "firing")])
    requests.paths.clear()
    assert sorted(runner.cycle(now=T0 + 181).transitions) == sorted(
        [("errors-by-user", f"u{user}", "resolved") for user in range(12)] + [("many-errors", "*", "resolved")])
    assert Counter(requests.paths) == Counter({("POST", "/_msearch"): 1, ("PUT", "/_bulk"): 3})


def test_a_refused_write_fails_its_rule_only_and_the_transition_comes_next_cycle_notified_once(
        es, es_url, namespace, tmp_path, webhook) -> None:
    client = Elasticsearch(es_url, request_timeout=60)
    faults = Faults(client, es)
    runner = Runner(client, write_rules(tmp_path, BY_USER.replace("NOTIFY", "[hook]")), namespace, webhook, "a")
    for user in range(3):
        index_events(es, namespace, "error", T0 + 30, 10, user=f"u{user}")
    faults.refused = {alert_id("errors-by-user", "u1")}  # the node's write queue is full for this one
    faults.beaten = {alert_id("many-errors", "*")}  # another runner decided the same and wrote it first
    first = runner.cycle(now=T0 + 61)
    assert sorted(first.transitions) == [("errors-by-user", "u0", "firing"), ("errors-by-user", "u2", "firing")]
    assert first.rule_failures == ["errors-by-user"] and first.evaluated == ["many-errors"]
    # many-errors's notification is on the other runner's write: not ours to send now (the other
    # runner, here none, would; our next search reads it queued, and we claim it then)
    delivered(runner, T0 + 61, 2)
    assert notified() == [("errors-by-user", "u0", "firing"), ("errors-by-user", "u2", "firing")]
    # The failed rule's window is evaluated again with the next one (no errors: all resolve). The
    # second window reads what the first wrote: u1 fires, then resolves.
    second = runner.cycle(now=T0 + 121)
    assert second.rule_failures == [] and second.evaluated == ["errors-by-user", "many-errors"]
    assert second.transitions == [("errors-by-user", "u1", "firing"), ("errors-by-user", "u0", "resolved"),
                                  ("errors-by-user", "u1", "resolved"), ("errors-by-user", "u2", "resolved"),
                                  ("many-errors", "*", "resolved")]
    delivered(runner, T0 + 121, 8)
    assert notified() == sorted([("errors-by-user", f"u{user}", state) for user in range(3)
                                 for state in ("firing", "resolved")] + [("many-errors", "*", "firing"),
                                                                         ("many-errors", "*", "resolved")])
    assert len(Receiver.received) == 8  # each once
    assert history(es, namespace) == sorted([("errors-by-user", f"u{user}", state) for user in range(3)
                                             for state in ("firing", "resolved")] + [("many-errors", "*", "resolved")])


def test_a_bulk_lost_whole_fails_its_rules_and_they_are_evaluated_again(es, es_url, namespace, tmp_path,
                                                                       webhook) -> None:
    client = Elasticsearch(es_url, request_timeout=60)
    faults = Faults(client, es)
    runner = Runner(client, write_rules(tmp_path, BY_USER.replace("NOTIFY", "[hook]")), namespace, webhook, "a")
    index_events(es, namespace, "error", T0 + 30, 10, user="u0")
    faults.down = True
    first = runner.cycle(now=T0 + 61)
    assert (first.transitions, first.evaluated) == ([], [])
    assert first.rule_failures == ["errors-by-user", "many-errors"] and Receiver.received == []
    second = runner.cycle(now=T0 + 121)
    assert second.transitions == [("errors-by-user", "u0", "firing"), ("errors-by-user", "u0", "resolved"),
                                  ("many-errors", "*", "firing"), ("many-errors", "*", "resolved")]
    delivered(runner, T0 + 121, 4)
    assert notified() == [("errors-by-user", "u0", "firing"), ("errors-by-user", "u0", "resolved"),
                          ("many-errors", "*", "firing"), ("many-errors", "*", "resolved")]
    assert len(Receiver.received) == 4
