"""Notifiers: a generic webhook, Slack, Microsoft Teams, email over SMTP, SMS through an HTTP API.

Every notification is a payload ``{"rule", "group", "state", "value", "threshold", "severity",
"labels", "since", "at", "message", "key"}``; ``key`` is the same for every retry of one
notification (idempotency). The generic webhook posts the payload as JSON, signed with
``X-Regwatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>``. Slack gets Block Kit, Teams an
Adaptive Card (the Workflows webhook shape; the retired Office 365 connector card is not sent),
SMS the form POST of Twilio's Messages API (or any gateway with ``fields`` templated). Messages
are rendered with plain ``{name}`` placeholders only: no attribute or index lookups, no code;
templates are checked when the configuration loads, not when an alert fires.

Model names and groups come from logs, that is from anyone who can send the registry a request:
everything interpolated is escaped for the target that renders it (Slack mrkdwn, Teams' Markdown,
HTML). Email verifies the server's certificate (STARTTLS) and will not log in over plain text
unless told to.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import smtplib
import ssl
import string
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import structlog
from pydantic import Field, field_validator, model_validator

from parsers.validation import StrictModel

log = structlog.get_logger(__name__)

# What a rule's message may name, with a sample of each value's type (to check format specs).
MESSAGE_FIELDS: dict[str, Any] = {"rule": "r", "state": "firing", "value": 1.5, "threshold": 1.0, "group": "g",
                                  "severity": "warning"}
# What an SMS gateway's form fields may name: the message fields and the payload's.
SMS_FIELDS: dict[str, Any] = MESSAGE_FIELDS | {"to": "+1", "sender": "+1", "text": "t", "since": 1.0, "at": 1.0,
                                               "message": "m", "key": "k"}


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


def check_template(template: str, allowed: dict[str, Any]) -> None:
    """Refuse, at load, a template that would fail when an alert fires: unknown names, lookups,
    conversions, or a format spec that does not fit the value (``{group:d}``)."""
    try:
        render(template, allowed)
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None and name not in allowed:
                raise UnsafeTemplate(f"placeholder {{{name}}} is not one of {', '.join(sorted(allowed))}")
    except UnsafeTemplate:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise UnsafeTemplate(f"template {template!r}: {exc}") from None


def check_url(url: str, where: str) -> str:
    """An http(s) URL with a host and no white space or control characters, or ValueError."""
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"{where}: not a URL (white space or control characters)")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"{where}: not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{where}: not an http(s) URL with a host")
    return url


# -- escaping per target -----------------------------------------------------------------------


def slack_escape(text: Any) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters (``<!channel>``, ``<url|label>``)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MARKDOWN = re.compile(r"([\\`*_\[\]()<>~|])")


def markdown_escape(text: Any) -> str:
    """Teams renders Markdown in TextBlocks and FactSets: emphasis, code and link punctuation is
    escaped (``[Re-authenticate](https://evil.example)`` stays text), and lines are joined so no
    line can start a heading or a list."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).splitlines()))


def table_cell(text: Any) -> str:
    """One cell of a Markdown table: a ``|`` or a line break would start another cell or row."""
    return " ".join(str(text).replace("|", "\\|").split())


def _header(text: str) -> str:
    """A mail header value: one line (a line break would inject headers, and email refuses it)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _secret(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env, "")
    if not value:
        raise DeliveryFailed(f"no secret in {env}")
    return value


def _url_from_env(env: str) -> str:
    """A URL kept in the environment (Slack and Teams webhook URLs are secrets); surrounding white
    space (a trailing newline from ``$(cat file)``) is dropped, anything else invalid refused."""
    url = (_secret(env) or "").strip()
    try:
        return check_url(url, env)
    except ValueError as exc:
        raise DeliveryFailed(str(exc)) from None


class _Target(StrictModel):
    timeout_s: float = Field(10.0, gt=0)
    digest: bool = False  # the notifications of one cycle as one message (a table)

    def check(self) -> None:
        """Settings that live outside the file (URLs in env): DeliveryFailed when unusable."""

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        rows = ["| " + " | ".join(table_cell(p[k]) for k in ("state", "rule", "group", "value", "threshold")) + " |"
                for p in payloads]
        table = "\n".join(["| state | rule | group | value | bound |", "|---|---|---|---|---|", *rows])
        worst = "critical" if any(p["severity"] == "critical" for p in payloads) else payloads[0]["severity"]
        key = hashlib.sha1("".join(p["key"] for p in payloads).encode()).hexdigest()
        self.send({"rule": f"{len(payloads)} alerts", "group": "digest", "state": "digest", "value": len(payloads),
                   "threshold": None, "severity": worst, "labels": {}, "since": min(p["since"] for p in payloads),
                   "at": max(p["at"] for p in payloads), "message": table, "key": key, "alerts": payloads})

    def _post(self, url: str, **kwargs: Any) -> None:
        try:
            response = httpx.post(url, timeout=self.timeout_s, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"HTTP {response.status_code}")


class WebhookTarget(_Target):
    type: Literal["webhook"] = "webhook"
    url: str
    secret_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url")

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

    def check(self) -> None:
        _url_from_env(self.url_env)

    def send(self, payload: dict[str, Any]) -> None:
        title = _title(payload)
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},  # plain_text: not parsed
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(payload["message"])[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"group {slack_escape(payload['group'])} · "
                                              f"value {slack_escape(payload['value'])} · "
                                              f"bound {slack_escape(payload['threshold'])}"}]},
        ]
        self._post(_url_from_env(self.url_env), json={"text": slack_escape(title), "blocks": blocks})


class TeamsTarget(_Target):
    type: Literal["teams"]
    url_env: str  # a Workflows ("When a Teams webhook request is received") URL

    def check(self) -> None:
        _url_from_env(self.url_env)

    def send(self, payload: dict[str, Any]) -> None:
        md = markdown_escape
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": md(_title(payload)),
                     "wrap": True},
                    {"type": "TextBlock", "text": md(payload["message"]), "wrap": True},
                    {"type": "FactSet", "facts": [{"title": "Group", "value": md(payload["group"])},
                                                  {"title": "Value", "value": md(payload["value"])},
                                                  {"title": "Bound", "value": md(payload["threshold"])}]}]}
        message = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        self._post(_url_from_env(self.url_env), json=message)


class EmailTarget(_Target):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ca_file: Path | None = None  # the CA that signed the server's certificate (default: the system's)
    verify_certs: bool = True  # false: TLS without checking whom we talk to (warned at load)
    allow_insecure_login: bool = False  # log in without TLS: the password crosses the network in clear
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _safe_login(self) -> EmailTarget:
        if self.username and not self.starttls and not self.allow_insecure_login:
            raise ValueError("username without starttls would send the password in clear: set starttls: true "
                             "(or allow_insecure_login: true)")
        if self.starttls and not self.verify_certs:
            log.warning("smtp_tls_unverified", host=self.host,
                        detail="verify_certs: false, anyone in the middle can read the password and the mail")
        if self.username and not self.starttls:
            log.warning("smtp_login_in_clear", host=self.host)
        return self

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if not self.verify_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def send(self, payload: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = _header(_title(payload))
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["X-Regwatch-Idempotency-Key"] = _header(payload["key"])
        fields = [("group", payload["group"]), ("value", payload["value"]), ("bound", payload["threshold"]),
                  ("key", payload["key"])]
        message.set_content(f"{payload['message']}\n\n" + "".join(f"{k}: {v}\n" for k, v in fields))
        rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in fields)
        message.add_alternative(f"<html><body><p>{html.escape(str(payload['message']))}</p><table>{rows}</table>"
                                "</body></html>", subtype="html")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=self._tls())
                if self.username:
                    smtp.login(self.username, _secret(self.password_env) or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException, ValueError) as exc:  # ssl.SSLError is an OSError
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


class SmsTarget(_Target):
    type: Literal["sms"]
    url: str  # Twilio: https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json
    username: str | None = None  # Twilio: the account SID
    password_env: str | None = None  # Twilio: the auth token
    to: str
    sender: str
    fields: dict[str, str] = Field(default_factory=lambda: {"To": "{to}", "From": "{sender}", "Body": "{text}"})

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url")

    @field_validator("fields")
    @classmethod
    def _templates(cls, fields: dict[str, str]) -> dict[str, str]:
        for name, template in fields.items():
            try:
                check_template(template, SMS_FIELDS)
            except UnsafeTemplate as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        return fields

    def send(self, payload: dict[str, Any]) -> None:
        text = f"{_title(payload)}: {payload['message']}"[:320]
        values = {"to": self.to, "sender": self.sender, "text": text, **payload}
        form = {name: render(template, values) for name, template in self.fields.items()}
        auth = (self.username, _secret(self.password_env) or "") if self.username else None
        self._post(self.url, data=form, auth=auth)


Target = Annotated[WebhookTarget | SlackTarget | TeamsTarget | EmailTarget | SmsTarget, Field(discriminator="type")]
