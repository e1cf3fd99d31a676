"""Alert state in Elasticsearch, changed only with optimistic concurrency.

One document per rule cycle (``cycle:<rule>``: the end of the last evaluated window) and one per
alert (``alert:<hash of rule and group>``). Every change is written with ``if_seq_no`` /
``if_primary_term``: of two runners evaluating the same cycle, one wins the write and only the
winner notifies. A notification to send is kept on the alert document (its *outbox*) until a
notifier took it, so a receiver that is down gets it when it returns, and a runner that dies
between deciding and sending leaves it for the next one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from elasticsearch import BadRequestError, ConflictError, Elasticsearch

STATE_MAPPINGS = {
    "dynamic": False,
    "properties": {
        "type": {"type": "keyword"}, "rule": {"type": "keyword"}, "group": {"type": "keyword"},
        "state": {"type": "keyword"}, "since": {"type": "double"}, "last_end": {"type": "double"},
        "value": {"type": "double"}, "updated": {"type": "double"},
        "outbox": {"properties": {"key": {"type": "keyword"}, "due": {"type": "double"}}},
        "outbox_claimed_until": {"type": "double"}, "last_cycle": {"type": "double"},
    },
}


class StateWriteError(RuntimeError):
    """One write of a bulk refused for another reason than a conflict (a full queue, a shard
    unavailable...): nothing was written for that document."""

    def __init__(self, doc_id: str, status: int | None, error: Any) -> None:
        super().__init__(f"state write of {doc_id} failed ({status}): {str(error)[:300]}")
        self.doc_id = doc_id
        self.status = status


@dataclass
class Versioned:
    id: str
    doc: dict[str, Any]
    seq_no: int | None = None  # None: not stored yet
    primary_term: int | None = None


def alert_id(rule: str, group: str) -> str:
    return "alert:" + hashlib.sha1(f"{rule}\x00{group}".encode()).hexdigest()[:24]


class StateStore:
    def __init__(self, client: Elasticsearch, namespace: str) -> None:
        self.client = client
        self.index = f"regwatch-alert-state-{namespace}"

    def ensure(self) -> None:
        if not self.client.indices.exists(index=self.index):
            try:
                self.client.indices.create(index=self.index, mappings=STATE_MAPPINGS,
                                           settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"})
            except BadRequestError as exc:  # created meanwhile by another runner: fine
                if exc.error != "resource_already_exists_exception":
                    raise

    def get_many(self, ids: list[str]) -> list[Versioned]:
        if not ids:
            return []
        found = self.client.mget(index=self.index, ids=ids)["docs"]
        return [Versioned(d["_id"], d["_source"], d["_seq_no"], d["_primary_term"]) if d.get("found")
                else Versioned(d["_id"], {}) for d in found]

    def write_many(self, writes: list[tuple[Versioned, dict[str, Any]]],
                   refresh: bool = False) -> list[Versioned | None]:
        """Like ``write`` for many documents in one bulk request; None where another runner won.
        A write that failed otherwise raises (:class:`StateWriteError`, the first one)."""
        out: list[Versioned | None] = []
        for outcome in self.write_each(writes, refresh):
            if isinstance(outcome, StateWriteError):
                raise outcome
            out.append(outcome)
        return out

    def write_each(self, writes: list[tuple[Versioned, dict[str, Any]]],
                   refresh: bool = False) -> list[Versioned | StateWriteError | None]:
        """Many conditional writes in one bulk request, each with its own outcome: the document
        as written, None where another runner changed (or created) it first, or the error that
        refused it. Each write keeps ``write``'s concurrency (``create``, or ``if_seq_no`` /
        ``if_primary_term``). With ``refresh`` the writes are searchable when it returns, at the
        cost of one refresh for the whole bulk instead of one per document. An error of the
        request itself (transport, node down) raises: nothing is known of any write then."""
        if not writes:
            return []
        operations: list[dict[str, Any]] = []
        for item, doc in writes:
            if item.seq_no is None:
                operations += [{"create": {"_index": self.index, "_id": item.id}}, doc]
            else:
                operations += [{"index": {"_index": self.index, "_id": item.id, "if_seq_no": item.seq_no,
                                          "if_primary_term": item.primary_term}}, doc]
        results = self.client.bulk(operations=operations, refresh=refresh)["items"]
        out: list[Versioned | StateWriteError | None] = []
        for (item, doc), result in zip(writes, results, strict=True):
            outcome = next(iter(result.values()))
            if outcome.get("status") in (200, 201):
                out.append(Versioned(item.id, doc, outcome["_seq_no"], outcome["_primary_term"]))
            elif outcome.get("status") == 409:
                out.append(None)
            else:
                out.append(StateWriteError(item.id, outcome.get("status"), outcome.get("error")))
        return out

    def cycle_search(self, rules: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ``_msearch`` header and body reading, in the cycle's one search request, every state
        document a cycle needs: the alerts of the due rules, the firing ones, those with an outbox,
        the runners' heartbeats, the silences and how each notifier fares."""
        query = {"bool": {"should": [
            {"terms": {"type": ["runner", "silence", "notifier"]}},
            {"exists": {"field": "outbox.key"}},
            {"bool": {"filter": [{"term": {"type": "alert"}}, {"term": {"state": "firing"}}]}},
            {"bool": {"filter": [{"term": {"type": "alert"}}, {"terms": {"rule": rules}}]}},
        ], "minimum_should_match": 1}}
        return {"index": self.index}, {"size": 10_000, "seq_no_primary_term": True, "query": query}

    @staticmethod
    def documents(response: dict[str, Any]) -> list[Versioned]:
        if "error" in response:
            raise RuntimeError(f"alert state search failed: {response['error']}")
        return [Versioned(h["_id"], h["_source"], h["_seq_no"], h["_primary_term"]) for h in response["hits"]["hits"]]

    def beat(self, doc_id: str, doc: dict[str, Any], refresh: bool = False) -> None:
        """A document only its writer changes (a runner's heartbeat): no read, no concurrency.
        With ``refresh`` it is searchable when this returns (a rare change others read at once:
        a notifier failing)."""
        self.client.index(index=self.index, id=doc_id, document=doc, refresh=refresh)

    def beat_operations(self, doc_id: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """:meth:`beat` as bulk operations, to go with other writes in one request."""
        return [{"index": {"_index": self.index, "_id": doc_id}}, doc]

    def refresh(self) -> None:
        """Make every write made so far searchable (a write of ours or another runner's)."""
        self.client.indices.refresh(index=self.index)

    def alerts_of_rules(self, rules: list[str]) -> dict[str, list[Versioned]]:
        self.client.indices.refresh(index=self.index)
        hits = self.client.search(index=self.index, size=10_000, seq_no_primary_term=True,
                                  query={"bool": {"filter": [{"term": {"type": "alert"}}, {"terms": {"rule": rules}}]}})
        out: dict[str, list[Versioned]] = {rule: [] for rule in rules}
        for h in hits["hits"]["hits"]:
            out.setdefault(h["_source"]["rule"], []).append(
                Versioned(h["_id"], h["_source"], h["_seq_no"], h["_primary_term"]))
        return out

    def alerts_of(self, rule: str) -> list[Versioned]:
        return self.alerts_of_rules([rule])[rule]

    def runners(self) -> list[dict[str, Any]]:
        """The heartbeat documents of every runner."""
        self.client.indices.refresh(index=self.index)
        hits = self.client.search(index=self.index, size=1000, query={"term": {"type": "runner"}})
        return [h["_source"] for h in hits["hits"]["hits"]]

    def notifiers(self) -> list[dict[str, Any]]:
        """How each notifier fares (``notifier:<name>`` documents): since when it has been
        failing, its last error, its last success."""
        self.client.indices.refresh(index=self.index)
        hits = self.client.search(index=self.index, size=1000, query={"term": {"type": "notifier"}})
        return [h["_source"] for h in hits["hits"]["hits"]]

    def write(self, item: Versioned, doc: dict[str, Any]) -> Versioned | None:
        """Store ``doc`` if nobody changed ``item`` meanwhile; None when another runner did.

        The write is not refreshed: a cycle's one search comes after the refresh of its claims
        (:mod:`rules.claims`), which makes every write before it searchable, ours or another
        runner's, for the price of one refresh a cycle instead of one per write."""
        try:
            if item.seq_no is None:
                result = self.client.index(index=self.index, id=item.id, document=doc, op_type="create")
            else:
                result = self.client.index(index=self.index, id=item.id, document=doc,
                                           if_seq_no=item.seq_no, if_primary_term=item.primary_term)
        except ConflictError:
            return None
        return Versioned(item.id, doc, result["_seq_no"], result["_primary_term"])

    def firing(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The alerts firing now (their state documents)."""
        self.client.indices.refresh(index=self.index)
        hits = self.client.search(index=self.index, size=limit, query={"bool": {"filter": [
            {"term": {"type": "alert"}}, {"term": {"state": "firing"}}]}})["hits"]["hits"]
        return [hit["_source"] for hit in hits]
