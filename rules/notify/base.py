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

import contextlib
import hashlib
import hmac
import json
import math
import re
import string
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, ClassVar

import httpx
import structlog
from pydantic import Field

from contract.secrets import SecretError, redact_userinfo, request_secrets
from contract.secrets import secret_from_env as _env_secret
from contract.validation import StrictModel
from rules.notify import http

NO_GROUP = "*"  # the group of a rule without group_by (rules.query.NO_GROUP)

log = structlog.get_logger(__name__)

# What a rule's message may name, with a sample of each value's type (to check format specs).
MESSAGE_FIELDS: dict[str, Any] = {"rule": "r", "state": "firing", "value": 1.5, "threshold": 1.0, "group": "g",
                                  "severity": "warning"}
# What an SMS gateway's form fields may name: the message fields and the payload's.
SMS_FIELDS: dict[str, Any] = MESSAGE_FIELDS | {"to": "+1", "sender": "+1", "text": "t", "since": 1.0, "at": 1.0,
                                               "message": "m", "key": "k"}


# A format spec may pad and round, within reason: ``{group:>500000000}`` would render 500 MB.
MAX_WIDTH = 1000
MAX_PRECISION = 100
_SPEC = re.compile(r"^(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?z?#?0?(?P<width>\d+)?[,_]?"
                   r"(?:\.(?P<precision>\d+))?(?P<type>[bcdeEfFgGnosxX%])?$", re.DOTALL)


class DeliveryFailed(RuntimeError):
    """A notification a target did not take. ``retryable`` says whether sending it again may
    succeed, as Alertmanager's notifiers decide: a connection error, a timeout, 429 and 5xx may;
    any other refusal (a 404 from a revoked webhook, a 400 for a payload the target will never
    take, a setting that is wrong) will not, and is not retried."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# The wall-clock moment (``time.monotonic()``) by which the notifier's current send must end: the
# runner sets it for the thread that sends to one target, so every request of that send (a
# digest to Opsgenie is several) shares one budget below the outbox lease.
_DEADLINE: ContextVar[float | None] = ContextVar("regwatch_notify_deadline", default=None)


@contextlib.contextmanager
def send_deadline(at: float) -> Iterator[None]:
    """Sends inside the block end by ``at`` (``time.monotonic()``), whatever each target's timeout."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def max_timeout(lease_s: float) -> float:
    """The longest a send may take under an outbox lease of ``lease_s``: the lease less a margin
    for recording the outcome (a quarter of it, at most 5 s)."""
    return lease_s - min(5.0, lease_s / 4)


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
        _check_spec(name, spec or "")
        value = values.get(name, "")
        out.append(format(value, spec) if spec else str(value))
    return "".join(out)


def _check_spec(name: str, spec: str) -> None:
    """Width and precision within :data:`MAX_WIDTH` and :data:`MAX_PRECISION`."""
    if not spec:
        return
    parsed = _SPEC.match(spec)
    if parsed is None:
        raise UnsafeTemplate(f"placeholder {{{name}}}: format {spec!r} is not a width, precision and type")
    width, precision = parsed["width"], parsed["precision"]
    if width is not None and (len(width) > 4 or int(width) > MAX_WIDTH):
        raise UnsafeTemplate(f"placeholder {{{name}}}: width {width[:12]} is more than {MAX_WIDTH}")
    if precision is not None and (len(precision) > 3 or int(precision) > MAX_PRECISION):
        raise UnsafeTemplate(f"placeholder {{{name}}}: precision {precision[:12]} is more than {MAX_PRECISION}")


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
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as exc:
        raise UnsafeTemplate(f"template {template[:80]!r}: {exc}") from None


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
    """The secret in environment variable ``env`` (None when no variable is named), surrounding
    white space dropped; unset, empty or holding a control character is a DeliveryFailed that
    names the variable, never the value, and is not worth retrying."""
    if env is None:
        return None
    try:
        return _env_secret(env)
    except SecretError as exc:
        raise DeliveryFailed(str(exc), retryable=False) from None


def url_from_env(env: str) -> str:
    """A URL kept in the environment (Slack and Teams webhook URLs are secrets); surrounding white
    space (a trailing newline from ``$(cat file)``) is dropped, anything else invalid refused."""
    url = secret_from_env(env) or ""
    try:
        return check_url(url, env)
    except ValueError as exc:
        raise DeliveryFailed(str(exc), retryable=False) from None


class Notifier(StrictModel):
    timeout_s: float = Field(10.0, gt=0)
    digest: bool = False  # the notifications of one cycle as one message (a table)

    # A target that holds alert state of its own (Alertmanager) and expects firing alerts to be
    # re-posted while they fire: the runner sends them again every ``resend_s``.
    refreshes: ClassVar[bool] = False

    def send(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Settings that live outside the file: every ``*_env`` secret this target names is set,
        without control characters (a URL in env is a URL too). DeliveryFailed when unusable."""
        for name in type(self).model_fields:
            if name.endswith("_env"):
                secret_from_env(getattr(self, name))

    def warnings(self) -> list[str]:
        """What is allowed but unsafe (a token over plain http), said when the runner starts."""
        return []

    def digest_text(self, payloads: list[dict[str, Any]]) -> str:
        """The digest's message: a Markdown table (a target that renders none says it otherwise)."""
        rows = ["| " + " | ".join(table_cell(v) for v in (p["state"], p["rule"], *shown_facts(p, blank=""))) + " |"
                for p in payloads]
        return "\n".join(["| state | rule | group | value | bound |", "|---|---|---|---|---|", *rows])

    def send_digest(self, payloads: list[dict[str, Any]]) -> None:
        table = self.digest_text(payloads)
        worst = "critical" if any(p["severity"] == "critical" for p in payloads) else payloads[0]["severity"]
        key = hashlib.sha1("".join(p["key"] for p in payloads).encode()).hexdigest()
        self.send({"rule": f"{len(payloads)} alerts", "group": "digest", "state": "digest", "value": len(payloads),
                   "threshold": None, "severity": worst, "labels": {}, "since": min(p["since"] for p in payloads),
                   "at": max(p["at"] for p in payloads), "message": table, "key": key, "alerts": payloads})

    def deadline(self) -> float:
        """When this target's current send must end: ``timeout_s`` from now, or the runner's
        deadline for the send if sooner."""
        own = time.monotonic() + self.timeout_s
        outer = _DEADLINE.get()
        return own if outer is None else min(own, outer)

    def _post(self, url: str, secrets: tuple[str, ...] = (), **kwargs: Any) -> None:
        """POST to ``url``, done by :meth:`deadline`: any status below 300 is taken. The error
        says the exception's type, the status and a cleaned excerpt of the answer, never the
        HTTP library's message (it may quote a header) nor any secret of the request: its
        headers, its credentials, the ``secrets`` of its body, a secret URL."""
        masked = request_secrets(url, kwargs.get("headers") or {}, kwargs.get("auth"), secrets)
        masked += [url, redact_userinfo(url)] if self.secret_url else []
        try:
            answer = http.post(url, self.deadline(), **kwargs)
        except http.RequestFailed as exc:
            if exc.kind == "timeout":
                raise DeliveryFailed(f"timed out: no complete answer within {self.timeout_s:g} s") from None
            raise DeliveryFailed(f"{exc.detail}: " + ("the URL cannot be used" if exc.kind == "unusable" else
                                                      "could not reach the target"),
                                 retryable=exc.kind != "unusable") from None
        if answer.status >= 300:
            said = http.excerpt(answer.head, masked)
            raise DeliveryFailed(f"HTTP {answer.status}" + (f": {said}" if said else ""),
                                 retryable=answer.status == 429 or answer.status >= 500)

    # A target whose URL is itself a secret (Slack, Teams): masked in an answer quoting it.
    secret_url: ClassVar[bool] = False


def shown_facts(payload: dict[str, Any], blank: str | None = None) -> tuple[str, str, str | None]:
    """Group, value and bound as the message words them (``payload["shown"]``); for a payload
    queued before it had them, the raw ones. A bound the rule has not (an event rule) is ``blank``."""
    shown = payload.get("shown") or {}
    group = shown.get("group", payload["group"])
    value = shown["value"] if "value" in shown else _number(payload["value"])
    bound = shown["threshold"] if "threshold" in shown else (
        None if payload.get("threshold") is None else _number(payload["threshold"]))
    return str(group), str(value), blank if bound is None else str(bound)


def _number(value: Any) -> str:
    """A raw value without its float noise: 8.0 -> "8", 0.40089186 -> "0.4009"."""
    if isinstance(value, float) and math.isfinite(value):
        return str(round(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def facts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """What Slack's context line and Teams' fact set show: the group (unless there is one group
    for all), the value and the bound (unless there is none)."""
    group, value, bound = shown_facts(payload)
    out = [] if payload["group"] == NO_GROUP else [("group", group)]
    out.append(("value", value))
    if bound is not None:
        out.append(("bound", bound))
    return out


def links(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The payload's Kibana links, labelled: Discover on the window, the alerts dashboard."""
    return [(label, payload[k]) for k, label in (("discover", "Open in Discover"), ("dashboard", "Alerts dashboard"))
            if payload.get(k)]


SAMPLE_CHARS = 500  # of one sample event in a message; the webhook payload carries it whole


def sample_lines(payload: dict[str, Any]) -> list[str]:
    """The sample events (or the one event that fired) as one line of JSON each, cut to
    :data:`SAMPLE_CHARS`."""
    events = payload.get("events") or ([payload["event"]] if payload.get("event") else [])
    lines = []
    for event in events:
        line = json.dumps(event, sort_keys=True, ensure_ascii=False, default=str)
        lines.append(line if len(line) <= SAMPLE_CHARS else line[:SAMPLE_CHARS - 1] + "…")
    return lines


def digest_lines(payloads: list[dict[str, Any]]) -> list[str]:
    """One line per alert of a digest: ``[FIRING] rule · group · value (bound b)``, each on one line."""
    out = []
    for p in payloads:
        group, value, bound = shown_facts(p)
        parts = [f"{title(p)}", *([] if p["group"] == NO_GROUP else [group]),
                 value + ("" if bound is None else f" (bound {bound})")]
        out.append(" ".join(" · ".join(parts).split()))
    return out


def title(payload: dict[str, Any]) -> str:
    mark = {"firing": "FIRING", "fired": "FIRED", "resolved": "RESOLVED"}.get(payload["state"], payload["state"])
    return f"[{mark}] {payload['rule']} ({payload['severity']})"
