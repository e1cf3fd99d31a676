"""Silences: notifications of a rule (and labels) muted until a time, or until an alert resolves.

As Alertmanager's silences, they mute what is sent, not what is evaluated: the alert still
changes state, the history still records it.
"""

from __future__ import annotations

import hashlib
import time

from rules.cycle import Known
from rules.notification import OutboxEntry
from rules.state import StateStore, Versioned


class Silences:
    def __init__(self, store: StateStore, known: Known) -> None:
        self.store = store
        self.known = known

    def add(self, rule: str, labels: dict[str, str] | None = None, until: float | None = None,
            group: str | None = None, reason: str = "") -> str:
        """Mute notifications of a rule (and labels) until a time, or, with ``until=None`` and a
        group, until that alert resolves."""
        silence_id = "silence:" + hashlib.sha1(f"{rule}{labels}{until}{group}{time.time()}".encode()).hexdigest()[:16]
        self.store.write(Versioned(silence_id, {}), {"type": "silence", "rule": rule, "labels": labels or {},
                                                     "until": until, "group": group, "reason": reason,
                                                     "updated": time.time()})
        return silence_id

    def listing(self, now: float, expired: bool = False) -> list[Versioned]:
        """The silences in force at ``now`` (with ``expired``, the ended ones too), newest first."""
        client = self.store.client
        client.indices.refresh(index=self.store.index)
        hits = client.search(index=self.store.index, size=10_000, seq_no_primary_term=True,
                             query={"term": {"type": "silence"}}, sort=[{"updated": "desc"}])["hits"]["hits"]
        found = [Versioned(h["_id"], h["_source"], h["_seq_no"], h["_primary_term"]) for h in hits]
        return [item for item in found if expired or in_force(item.doc, now)]

    def expire(self, silence_id: str, now: float) -> Versioned | None:
        """End a silence now (Alertmanager's expire); None when there is none in force by that id."""
        if not silence_id.startswith("silence:"):
            silence_id = "silence:" + silence_id
        item = self.store.get_many([silence_id])[0]
        if item.seq_no is None or item.doc.get("type") != "silence" or not in_force(item.doc, now):
            return None
        return self.store.write(item, item.doc | {"until": now, "ended_by": "expired", "updated": now})

    def mutes(self, entry: OutboxEntry, now: float) -> bool:
        """Whether a silence mutes this notification now. A silence until resolved mutes the
        alert up to and including its resolution, then ends."""
        payload = entry["payload"]
        for item in self.known.of_type("silence"):
            silence = item.doc
            if silence["rule"] not in ("*", payload["rule"]):
                continue
            if any(entry.get("labels", {}).get(k) != v for k, v in silence["labels"].items()):
                continue
            if silence["until"] is not None:
                if now < silence["until"]:
                    return True
            elif silence.get("group") in (None, payload["group"]):
                if payload["state"] == "resolved":
                    ended = self.store.write(item, silence | {"until": now, "ended_by": "resolved"})
                    if ended is not None:
                        self.known.put(ended)
                return True
        return False


def in_force(silence: dict, now: float) -> bool:
    """A silence until a time mutes before it; one until resolved mutes until it is ended."""
    until = silence.get("until")
    if until is None:
        return True
    return isinstance(until, (int, float)) and not isinstance(until, bool) and now < until
