"""Notifiers: a generic webhook, Slack, Microsoft Teams, email over SMTP, SMS through an HTTP API.

Every notification is a payload ``{"rule", "group", "state", "value", "threshold", "severity",
"labels", "since", "at", "message", "key"}``; ``key`` is the same for every retry of one
notification (idempotency). The generic webhook posts the payload as JSON, signed with
``X-Regwatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>``. Slack gets Block Kit, Teams an
Adaptive Card (the Workflows webhook shape; the retired Office 365 connector card is not sent),
SMS the form POST of Twilio's Messages API (or any gateway with ``fields`` templated). Messages
are rendered with plain ``{name}`` placeholders only: no attribute or index lookups, no code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import string
from email.message import EmailMessage
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field


class DeliveryFailed(RuntimeError):
    pass


class UnsafeTemplate(ValueError):
    pass


def render(template: str, values: dict[str, Any]) -> str:
    """``{name}`` placeholders from ``values``; ``{a.b}``, ``{a[0]}`` and conversions are refused."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if not name.isidentifier() or conversion or (spec and not all(c in "0123456789.,%efgd<>^+- " for c in spec)):
            raise UnsafeTemplate(f"placeholder {{{name}}} is not a plain name")
        value = values.get(name, "")
        out.append(format(value, spec) if spec else str(value))
    return "".join(out)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _secret(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env, "")
    if not value:
        raise DeliveryFailed(f"no secret in {env}")
    return value


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_s: float = 10.0
    digest: bool = False  # the notifications of one cycle as one message (a table)

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        rows = [f"| {p['state']} | {p['rule']} | {p['group']} | {p['value']} | {p['threshold']} |" for p in payloads]
        table = "\n".join(["| state | rule | group | value | bound |", "|---|---|---|---|---|", *rows])
        worst = "critical" if any(p["severity"] == "critical" for p in payloads) else payloads[0]["severity"]
        key = hashlib.sha1("".join(p["key"] for p in payloads).encode()).hexdigest()
        self.send({"rule": f"{len(payloads)} alerts", "group": "digest", "state": "digest", "value": len(payloads),
                   "threshold": None, "severity": worst, "labels": {}, "since": min(p["since"] for p in payloads),
                   "at": max(p["at"] for p in payloads), "message": table, "key": key, "alerts": payloads})

    def _post(self, url: str, **kwargs: Any) -> None:
        try:
            response = httpx.post(url, timeout=self.timeout_s, **kwargs)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"HTTP {response.status_code}")


class WebhookTarget(_Target):
    type: Literal["webhook"] = "webhook"
    url: str
    secret_env: str | None = None

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Regwatch-Idempotency-Key": payload["key"]}
        if (secret := _secret(self.secret_env)) is not None:
            headers["X-Regwatch-Signature"] = signature(secret, body)
        self._post(self.url, content=body, headers=headers)


def _title(payload: dict[str, Any]) -> str:
    mark = {"firing": "FIRING", "fired": "FIRED", "resolved": "RESOLVED"}.get(payload["state"], payload["state"])
    return f"[{mark}] {payload['rule']} ({payload['severity']})"


class SlackTarget(_Target):
    type: Literal["slack"]
    url_env: str  # incoming webhook URLs are secrets

    def send(self, payload: dict[str, Any]) -> None:
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": _title(payload)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": payload["message"][:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"group `{payload['group']}` · value "
                                              f"{payload['value']} · bound {payload['threshold']}"}]},
        ]
        self._post(_secret(self.url_env) or "", json={"text": _title(payload), "blocks": blocks})


class TeamsTarget(_Target):
    type: Literal["teams"]
    url_env: str  # a Workflows ("When a Teams webhook request is received") URL

    def send(self, payload: dict[str, Any]) -> None:
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": _title(payload), "wrap": True},
                    {"type": "TextBlock", "text": payload["message"], "wrap": True},
                    {"type": "FactSet", "facts": [{"title": "Group", "value": str(payload["group"])},
                                                  {"title": "Value", "value": str(payload["value"])},
                                                  {"title": "Bound", "value": str(payload["threshold"])}]}]}
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        self._post(_secret(self.url_env) or "", json=message)


class EmailTarget(_Target):
    type: Literal["email"]
    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str]

    def send(self, payload: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = _title(payload)
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["X-Regwatch-Idempotency-Key"] = payload["key"]
        message.set_content(f"{payload['message']}\n\ngroup: {payload['group']}\nvalue: {payload['value']}\n"
                            f"bound: {payload['threshold']}\nkey: {payload['key']}\n")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, _secret(self.password_env) or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


class SmsTarget(_Target):
    type: Literal["sms"]
    url: str  # Twilio: https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json
    username: str | None = None  # Twilio: the account SID
    password_env: str | None = None  # Twilio: the auth token
    to: str
    sender: str
    fields: dict[str, str] = Field(default_factory=lambda: {"To": "{to}", "From": "{sender}", "Body": "{text}"})

    def send(self, payload: dict[str, Any]) -> None:
        text = f"{_title(payload)}: {payload['message']}"[:320]
        values = {"to": self.to, "sender": self.sender, "text": text, **payload}
        form = {name: render(template, values) for name, template in self.fields.items()}
        auth = (self.username, _secret(self.password_env) or "") if self.username else None
        self._post(self.url, data=form, auth=auth)


Target = Annotated[WebhookTarget | SlackTarget | TeamsTarget | EmailTarget | SmsTarget, Field(discriminator="type")]
