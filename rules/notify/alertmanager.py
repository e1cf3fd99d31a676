"""Alertmanager: alerts posted to its v2 API (``POST /api/v2/alerts``), the way Prometheus does.

An alert's identity in Alertmanager is its label set, so the labels are stable for one alert:
``alertname`` (the rule), ``rule``, ``severity``, the group under a name that says what it is
(``model``, ``target``... from the rule's ``group_by``), the rule's labels and this target's own
(``environment``, ``cluster``...). Labels route and silence alerts, so data never overwrites the
ones that are not data: the target's labels and the reserved three are set last, and a group
label that would collide with one of them or with a rule's label is prefixed
(``group_alertname``). A firing alert carries ``endsAt`` a few re-post intervals ahead and is
re-posted while it fires (the runner's refresh): if the runners stop, Alertmanager
resolves it by itself, as it does for a silent Prometheus. A resolution carries ``endsAt`` = now.

Posting the same alert twice (two runners) is harmless: Alertmanager merges alerts by labels.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from contract.secrets import redact_userinfo
from contract.timestamps import iso_from_epoch
from rules.notify.base import Notifier, check_url, secret_from_env

# The label an alert's group is given, by the rule's group_by; any other field: "group".
GROUP_LABELS: dict[str, str] = {
    "modelregistry.model.name": "model",
    "modelregistry.probe.target": "target",
    "service.environment": "environment",
    "host.name": "host",
    "user.name": "user",
    "source.ip": "source_ip",
    "runner": "runner",
}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ENDS_AFTER_RESENDS = 4  # Prometheus: endsAt = now + 4 x max(resend delay, evaluation interval)


class AlertmanagerTarget(Notifier):
    type: Literal["alertmanager"]
    url: str  # Alertmanager's base URL, e.g. http://alertmanager:9093
    labels: dict[str, str] = Field(default_factory=dict)  # the runner's own (environment, cluster...)
    resend_s: float = Field(60.0, ge=5)  # re-post a firing alert this often
    bearer_token_env: str | None = None

    refreshes: ClassVar[bool] = True  # the runner re-posts firing alerts to this target

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url").rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = [name for name in labels if not _LABEL_NAME.match(name)]
        if bad:
            raise ValueError(f"label names must match [a-zA-Z_][a-zA-Z0-9_]*: {', '.join(bad)}")
        return labels

    def warnings(self) -> list[str]:
        host = httpx.URL(self.url).host
        if self.bearer_token_env and self.url.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
            return [(f"bearer_token_env over plain http to {redact_userinfo(self.url)}: the token crosses the "
                     "network in clear (use https)")]
        return []

    def alert(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One postableAlert of Alertmanager's v2 OpenAPI schema."""
        reserved = {"alertname": payload["rule"], "rule": payload["rule"], "severity": payload["severity"]}
        fixed = set(reserved) | set(self.labels)
        labels = {name: str(value) for name, value in payload.get("labels", {}).items()
                  if _LABEL_NAME.match(name) and name not in fixed}
        groups = payload.get("groups") or {}
        found: dict[str, str] = {}
        if len(groups) > 1:  # group_by over several fields: one label each
            for field, value in groups.items():
                found[GROUP_LABELS.get(field) or re.sub(r"[^a-zA-Z0-9_]", "_", field)] = str(value)
        elif payload.get("group") not in (None, "", "*"):
            by = payload.get("group_by")
            found[GROUP_LABELS.get(by, "group") if isinstance(by, str) else "group"] = str(payload["group"])
        for name, value in found.items():
            if not _LABEL_NAME.match(name):  # a field starting with a digit
                name = f"group_{name}"
            labels[f"group_{name}" if name in fixed or name in labels else name] = value
        labels |= self.labels
        labels |= reserved
        annotations = {"message": payload["message"], "summary": payload["message"][:200],
                       "value": str(payload["value"]), "threshold": str(payload["threshold"])}
        if payload.get("dashboard"):
            annotations["dashboard"] = payload["dashboard"]
        starts = payload["since"] if payload["state"] in ("firing", "resolved") else payload["at"]
        ends = payload["at"] if payload["state"] == "resolved" else payload["at"] + ENDS_AFTER_RESENDS * self.resend_s
        alert = {"labels": {k: str(v) for k, v in labels.items()}, "annotations": annotations,
                 "startsAt": iso_from_epoch(starts), "endsAt": iso_from_epoch(max(ends, starts))}
        if payload.get("dashboard"):
            alert["generatorURL"] = payload["dashboard"]
        return alert

    def send(self, payload: dict[str, Any]) -> None:
        self._post_alerts([self.alert(payload)])

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        """Alertmanager groups by itself: a digest is the alerts in one request."""
        self._post_alerts([self.alert(p) for p in payloads])

    def _post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        headers = {"Content-Type": "application/json"}
        if (token := secret_from_env(self.bearer_token_env)) is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._post(f"{self.url}/api/v2/alerts", json=alerts, headers=headers)
