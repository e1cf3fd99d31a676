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
