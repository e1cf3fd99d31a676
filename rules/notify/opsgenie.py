"""Opsgenie, through its Alert API: ``POST /v2/alerts`` to create, ``POST
/v2/alerts/{alias}/close?identifierType=alias`` to close.

The alias is the alert's id (rule and group), the same as PagerDuty's dedup key: Opsgenie folds a
create whose alias names an open alert into it (its count goes up), so a re-sent notification
opens no second alert, and the resolution closes exactly the alert the firing opened. The API
key is a secret read from the environment variable ``api_key_env`` names (``Authorization:
GenieKey <key>``).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from rules.notify.base import Notifier, check_url, secret_from_env, title
from rules.notify.pagerduty import dedup_key

Priority = Literal["P1", "P2", "P3", "P4", "P5"]
PRIORITIES: dict[str, Priority] = {"critical": "P1", "warning": "P3", "info": "P5"}


class OpsgenieTarget(Notifier):
    type: Literal["opsgenie"]
    api_key_env: str = Field(min_length=1)
    url: str = "https://api.opsgenie.com"  # https://api.eu.opsgenie.com for the EU instance
    source: str = "regwatch"
    tags: list[str] = Field(default_factory=list)
    priorities: dict[str, Priority] = Field(default_factory=lambda: dict(PRIORITIES))

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url").rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"GenieKey {secret_from_env(self.api_key_env)}"}

    def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The create request's body (Opsgenie's limits: message 130, alias 512, description
        15,000 characters; details are strings)."""
        details = {"rule": payload["rule"], "group": str(payload.get("group", "")), "state": payload["state"],
                   "value": str(payload["value"]), "threshold": str(payload["threshold"]),
                   "key": payload["key"]}
        for name in ("discover", "dashboard"):
            if payload.get(name):
                details[name] = payload[name]
        if payload.get("window"):
            details["window"] = f"{payload['window']['start']} .. {payload['window']['end']}"
        details |= {f"label.{k}": str(v) for k, v in payload.get("labels", {}).items()}
        return {"message": title(payload)[:130], "alias": dedup_key(payload)[:512],
                "description": payload["message"][:15000], "source": self.source,
                "entity": str(payload.get("group", ""))[:512],
                "priority": self.priorities.get(payload["severity"], "P3"),
                "tags": [*self.tags, f"rule:{payload['rule']}"[:50]],
                "details": {k: v[:8000] for k, v in details.items()}}

    def send(self, payload: dict[str, Any]) -> None:
        if payload["state"] == "resolved":
            alias = quote(dedup_key(payload), safe="")
            self._post(f"{self.url}/v2/alerts/{alias}/close", params={"identifierType": "alias"},
                       json={"source": self.source, "note": payload["message"][:25000]}, headers=self._headers())
            return
        self._post(f"{self.url}/v2/alerts", json=self.create(payload), headers=self._headers())

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        """One alert per incident, not a table: each in turn."""
        for payload in payloads:
            self.send(payload)
