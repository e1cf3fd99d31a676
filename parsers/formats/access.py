"""Text access logs: nginx ``combined`` (with or without timing fields), gunicorn, uvicorn.

nginx ``combined`` and gunicorn's default access log share one shape::

    127.0.0.1 - alice [24/Nov/2026:23:55:40 +0000] "GET /path?q HTTP/1.1" 200 183 "-" "ua"

nginx sites often append timing: ``rt=$request_time uct="..." urt="$upstream_response_time"``.
uvicorn logs ``INFO:     127.0.0.1:54321 - "GET /path HTTP/1.1" 200 OK``, often behind a
logging prefix with a timestamp; a line without one is stamped with the time it was read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from parsers.errors import ParseError
from parsers.formats.http import INVALID_REQUEST, fill_request, is_ip, seconds_to_ns, split_request_line
from parsers.routes import Route, Router
from parsers.timestamps import parse_any, parse_clf, parse_local
from parsers.values import digits, status_code

if TYPE_CHECKING:
    from parsers.http_documents import HttpDocuments

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_COMBINED_SHAPE = (r"(\S+) \S+ (\S+) \[([^\]]+)\] {q} (\d{{3}}) (\d+|-)(?: {q} {q})?(.*)")
# nginx escapes '"' inside fields as \x22, so the fast form without backslash handling matches
# nearly every line; the exact form (quotes escaped with a backslash) is the fallback.
COMBINED_FAST = re.compile(
    r'(\S+) \S+ (\S+) \[([^\]]+)\] "([A-Z]+) (/[^" ]*) HTTP/([0-9.]+)" (\d{3}) (\d+|-)'
    r'(?: "([^"]*)" "([^"]*)")?(?: rt=([0-9]+\.[0-9]+))?(.*)'
)
COMBINED = re.compile(_COMBINED_SHAPE.format(q=_QUOTED))
_TIMING = re.compile(r'\b(rt|urt|request_time|upstream_response_time)="?([0-9.:, -]+?)"?(?:\s|$)')

Parsed = tuple[Route, bool, dict[str, Any]]


def _duration(rest: str) -> int | None:
    """``rt=0.126`` (request time) first, else the upstream time; nanoseconds."""
    at = rest.find(" rt=")
    value: str | None
    if at >= 0:
        end = rest.find(" ", at + 4)
        value = rest[at + 4:end if end >= 0 else None].strip('"')
    else:
        timings = dict(_TIMING.findall(rest))
        value = timings.get("request_time") or timings.get("urt") or timings.get("upstream_response_time")
    try:
        return seconds_to_ns(value)
    except ValueError:
        return None


def _request(f: dict[str, Any], request: str, router: Router) -> tuple[Route, bool]:
    split = split_request_line(request)
    if split is None:
        f["original_request"] = request
        status = f.get("status")
        return INVALID_REQUEST, status is not None and status >= 400
    method, target, version = split
    if version is not None:
        f["http_version"] = version
    return fill_request(f, method, target, router)


def parse_combined(text: str, router: Router, ctx: Any = None, docs: HttpDocuments | None = None
                   ) -> Parsed | dict[str, Any]:
    """A line's fields (or, given ``docs``, its finished document when the line has the usual shape)."""
    fast = COMBINED_FAST.fullmatch(text)
    if fast is not None and docs is not None:
        ip, user, when, method, target, version, status, size, referrer, agent, rt, rest = fast.groups()
        try:
            ts = parse_clf(when)
        except (ValueError, KeyError, IndexError) as exc:
            raise ParseError(f"bad timestamp {when!r}: {exc}") from None
        # (status_code and digits inline for the usual values: three ASCII digits, a short size)
        code = int(status) if "100" <= status <= "999" else status_code(status)
        nbytes = None if size == "-" else int(size) if len(size) <= 18 else digits(size, "bytes")
        duration = None
        if rt is not None:
            seconds = float(rt)  # digits.digits: never negative or NaN
            if seconds >= 9e9:  # nanoseconds beyond a long
                raise ParseError(f"value out of range: rt={rt[:40]} seconds", "out_of_range")
            duration = round(seconds * 1e9)
        elif rest:
            duration = _duration(rest)
        return docs.document(ts, method, target, version, code, nbytes,
                             None if ip == "-" else ip, None if user == "-" else user,
                             referrer if referrer and referrer != "-" else None,
                             agent if agent and agent != "-" else None, duration, text)
    if fast is not None:
        ip, user, when, method, target, version, status, size, referrer, agent, rt, rest = fast.groups()
        request = None
    else:
        m = COMBINED.fullmatch(text)
        if m is None:
            raise ParseError("not an access log line (combined / gunicorn format)")
        ip, user, when, request, status, size, referrer, agent, rest = m.groups()
        rt = None
    try:
        ts = parse_clf(when)
    except (ValueError, KeyError, IndexError) as exc:
        raise ParseError(f"bad timestamp {when!r}: {exc}") from None
    f: dict[str, Any] = {"ts": ts, "status": status_code(status)}
    if ip != "-":
        if is_ip(ip):
            f["ip"] = ip
        else:
            f["source_address"] = ip
    if user != "-":
        f["user"] = user
    if size != "-":
        f["bytes"] = digits(size, "bytes")
    if referrer and referrer != "-":
        f["referrer"] = referrer
    if agent and agent != "-":
        f["ua"] = agent
    if rt is not None:
        seconds = float(rt)  # digits.digits: never negative or NaN
        if seconds >= 9e9:  # nanoseconds beyond a long
            raise ParseError(f"value out of range: rt={rt[:40]} seconds", "out_of_range")
        f["duration_ns"] = round(seconds * 1e9)
    elif rest:
        duration = _duration(rest)
        if duration is not None:
            f["duration_ns"] = duration
    if request is None:
        f["http_version"] = version
        route, failed = fill_request(f, method, target, router)
    else:
        route, failed = _request(f, request, router)
    return route, failed, f


_UVICORN = re.compile(
    r"(?:(\d{4}[-/]\d{2}[-/]\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+)?"
    r"(?:\[[^\]]*\]\s+)*"          # [pid] [level] blocks of a logging prefix
    r"(?:[A-Z]+:?\s+)?"            # INFO:
    r"(?:[\w.]+:\s+)?"             # uvicorn.access:
    r"(\S+) - " + _QUOTED + r" (\d{3})(?: .*)?"
)


# The usual line (a time, a level, a logger name, no [...] blocks, a request without quotes or
# backslashes): a pattern without _UVICORN's optional parts to try, 2.5 times faster (profiled with
# py-spy: _UVICORN was 57 % of a uvicorn line's time). Where the line has one ' - "', its groups
# are _UVICORN's: the time's extent is forced by the whitespace after it, the client is the
# non-space run before the one ' - "', the request ends at the first quote.
_UVICORN_USUAL = re.compile(
    r"(\d{4}[-/]\d{2}[-/]\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"(?:[A-Z]+:?\s+)?(?:[\w.]+:\s+)?"
    r'(\S+) - "([^"\\]*)" (\d{3})(?: .*)?'
)


def parse_uvicorn(text: str, router: Router, ctx: Any = None, docs: HttpDocuments | None = None
                  ) -> Parsed | dict[str, Any]:
    m = _UVICORN_USUAL.fullmatch(text) if text.count(' - "') == 1 else None
    if m is None:
        m = _UVICORN.fullmatch(text)
    if m is None:
        raise ParseError("not a uvicorn access log line")
    when, client, request, status = m.groups()
    code = status_code(status)
    f: dict[str, Any] = {"status": code}
    zone = None
    if when is not None:
        when = when.replace(",", ".").replace("/", "-", 2)
        try:
            if when[-1] == "Z" or when[-5] in "+-" or when[-6] in "+-":  # the line says its zone
                f["ts"] = parse_any(when)
            else:  # a zone-less time: the input's zone (ECS event.timezone says which), else UTC
                zone = ctx.timezone if ctx is not None and ctx.timezone else "UTC"
                f["ts"] = parse_local(when, zone)
                f["timezone"] = zone
        except ValueError as exc:
            raise ParseError(f"bad timestamp {when!r}: {exc}") from None
    host = client
    if client.startswith("["):  # [::1]:54321
        host = client[1:].partition("]")[0]
    elif client.count(":") == 1:
        host = client.partition(":")[0]
    if docs is not None and when is not None:
        split = split_request_line(request)
        if split is not None:
            method, target, version = split
            return docs.document(f["ts"], method, target, version, code, None, None if host == "-" else host,
                                 None, None, None, None, text, zone)
    if is_ip(host):
        f["ip"] = host
    elif host != "-":
        f["source_address"] = host
    route, failed = _request(f, request, router)
    return route, failed, f
