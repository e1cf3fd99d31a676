"""The data views: the names people see the streams by, one per kind and one for every event.

Kibana's saved objects create them and the rule runner's links open Discover on them, so a view's
id is spelt once, here.
"""

from __future__ import annotations

from contract import streams

_TITLES = {"registration": "registrations", "retrieval": "retrievals", "version": "version changes",
           "error": "errors", "access": "access", "deadletter": "dead-letters", "alert": "alerts",
           "availability": "availability", "anomaly": "anomaly results"}
DATA_VIEWS = {
    "regwatch-events": ("regwatch: all events", f"logs-{streams.PRODUCT}.*"),
    **{f"regwatch-{kind}": (f"regwatch: {_TITLES[kind]}", streams.pattern(kind=kind, kind_type=kind_type))
       for kind_type, kind in streams.all_kinds() if kind in _TITLES},
}
