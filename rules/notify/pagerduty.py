"""PagerDuty, through the Events API v2 (``POST https://events.pagerduty.com/v2/enqueue``).

A firing alert is a ``trigger`` and its resolution a ``resolve`` with the same ``dedup_key``: the
alert's id (rule and group), so PagerDuty closes the incident it opened. PagerDuty merges a
trigger whose ``dedup_key`` names an open incident into it, so a notification re-sent (a reminder,
or the one in flight when a runner died) opens no second incident. An event rule's notification
(one matching event, a changed value) is its own incident, keyed by the notification's key.

The integration's routing key is a secret: it is read from the environment variable
``routing_key_env`` names, never from the file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from contract.timestamps import iso_from_epoch
from rules.notify.base import Notifier, check_url, secret_from_env, title

SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}
EPISODES = ("firing", "resolved")  # states of an alert with a life: one incident per episode


def dedup_key(payload: dict[str, Any]) -> str:
    """The key PagerDuty (and Opsgenie's alias) knows one incident by."""
    return str(payload.get("alert") or payload["key"]) if payload["state"] in EPISODES else str(payload["key"])


class PagerDutyTarget(Notifier):
    type: Literal["pagerduty"]
    routing_key_env: str = Field(min_length=1)
    url: str = "https://events.pagerduty.com/v2/enqueue"  # events.eu.pagerduty.com in the EU service region
    source: str = "regwatch"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url")

    def event(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = secret_from_env(self.routing_key_env)
        if payload["state"] == "resolved":
            return {"routing_key": key, "event_action": "resolve", "dedup_key": dedup_key(payload)}
        details = {k: payload[k] for k in ("rule", "group", "groups", "state", "value", "threshold", "labels",
                                           "window", "index", "events", "event", "key") if k in payload}
        event: dict[str, Any] = {
            "routing_key": key, "event_action": "trigger", "dedup_key": dedup_key(payload),
            "payload": {"summary": f"{title(payload)}: {payload['message']}"[:1024], "source": self.source,
                        "severity": SEVERITIES.get(payload["severity"], "warning"),
                        "timestamp": iso_from_epoch(payload["at"]), "component": payload["rule"],
                        "group": str(payload.get("group", ""))[:255], "class": payload["state"],
                        "custom_details": details},
            "client": "regwatch"}
        links = [{"href": payload[k], "text": text}
                 for k, text in (("discover", "Events in Kibana Discover"), ("dashboard", "Alerts dashboard"))
                 if payload.get(k)]
        if links:
            event["links"] = links
        return event

    def send(self, payload: dict[str, Any]) -> None:
        self._post(self.url, secrets=(secret_from_env(self.routing_key_env) or "",), json=self.event(payload))

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        """An incident system wants one event per incident, not a table: each in turn."""
        for payload in payloads:
            self.send(payload)
