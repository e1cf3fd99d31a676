"""What every notifier shares: the target base, templates, URL checks, escaping per target.

Every notification is a payload ``{"rule", "group", "state", "value", "threshold", "severity",
"labels", "since", "at", "message", "key"}``; ``key`` is the same for every retry of one
notification (idempotency). Messages are rendered with plain ``{name}`` placeholders only: no
attribute or index lookups, no code; templates are checked when the configuration loads, not when
an alert fires.

Model names and groups come from logs, that is from anyone who can send the registry a request:
everything interpolated is escaped for the target that renders it (Slack mrkdwn, Teams' Markdown,
HTML).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import string
from typing import Any, ClassVar

import httpx
import structlog
from pydantic import Field

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


def header_value(text: str) -> str:
    """A mail header value: one line (a line break would inject headers, and email refuses it)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_from_env(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env, "")
    if not value:
        raise DeliveryFailed(f"no secret in {env}")
    return value


def url_from_env(env: str) -> str:
    """A URL kept in the environment (Slack and Teams webhook URLs are secrets); surrounding white
    space (a trailing newline from ``$(cat file)``) is dropped, anything else invalid refused."""
    url = (secret_from_env(env) or "").strip()
    try:
        return check_url(url, env)
    except ValueError as exc:
        raise DeliveryFailed(str(exc)) from None


class Notifier(StrictModel):
    timeout_s: float = Field(10.0, gt=0)
    digest: bool = False  # the notifications of one cycle as one message (a table)

    # A target that holds alert state of its own (Alertmanager) and expects firing alerts to be
    # re-posted while they fire: the runner sends them again every ``resend_s``.
    refreshes: ClassVar[bool] = False

    def send(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

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


def title(payload: dict[str, Any]) -> str:
    mark = {"firing": "FIRING", "fired": "FIRED", "resolved": "RESOLVED"}.get(payload["state"], payload["state"])
    return f"[{mark}] {payload['rule']} ({payload['severity']})"
