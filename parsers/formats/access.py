"""Text access logs: nginx ``combined`` (with or without timing fields), gunicorn, uvicorn.

nginx ``combined`` and gunicorn's default access log share one shape::

    127.0.0.1 - alice [24/Nov/2026:23:55:40 +0000] "GET /path?q HTTP/1.1" 200 183 "-" "ua"

nginx sites often append timing: ``rt=$request_time uct="..." urt="$upstream_response_time"``.
uvicorn logs ``INFO:     127.0.0.1:54321 - "GET /path HTTP/1.1" 200 OK``, often behind a
logging prefix with a timestamp; a line without one is stamped with the time it was read.
"""

from __future__ import annotations

import re
from typing import Any

from parsers.errors import ParseError
from parsers.formats.http import INVALID_REQUEST, fill_request, is_ip, seconds_to_ns, split_request_line
from parsers.routes import Route, Router
from parsers.timestamps import parse_any, parse_clf

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
COMBINED = re.compile(
    r"(\S+) \S+ (\S+) \[([^\]]+)\] " + _QUOTED + r" (\d{3}) (\d+|-)"
    r"(?: " + _QUOTED + " " + _QUOTED + r")?(.*)"
)
_TIMING = re.compile(r'\b(rt|urt|request_time|upstream_response_time)="?([0-9.:, -]+?)"?(?:\s|$)')

Parsed = tuple[Route, bool, dict[str, Any]]


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


def parse_combined(text: str, router: Router) -> Parsed:
    m = COMBINED.fullmatch(text)
    if m is None:
        raise ParseError("not an access log line (combined / gunicorn format)")
    ip, user, when, request, status, size, referrer, agent, rest = m.groups()
    try:
        ts = parse_clf(when)
    except (ValueError, KeyError, IndexError) as exc:
        raise ParseError(f"bad timestamp {when!r}: {exc}") from None
    f: dict[str, Any] = {"ts": ts, "status": int(status)}
    if ip != "-":
        if is_ip(ip):
            f["ip"] = ip
        else:
            f["source_address"] = ip
    if user != "-":
        f["user"] = user
    if size != "-":
        f["bytes"] = int(size)
    if referrer and referrer != "-":
        f["referrer"] = referrer
    if agent and agent != "-":
        f["ua"] = agent
    if rest:
        timings = dict(_TIMING.findall(rest))
        raw = timings.get("rt") or timings.get("request_time") or timings.get("urt") or timings.get("upstream_response_time")
        try:
            duration = seconds_to_ns(raw)
        except ValueError:
            duration = None
        if duration is not None:
            f["duration_ns"] = duration
    route, failed = _request(f, request, router)
    return route, failed, f


_UVICORN = re.compile(
    r"(?:(\d{4}[-/]\d{2}[-/]\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+)?"
    r"(?:\[[^\]]*\]\s+)*"          # [pid] [level] blocks of a logging prefix
    r"(?:[A-Z]+:?\s+)?"            # INFO:
    r"(?:[\w.]+:\s+)?"             # uvicorn.access:
    r"(\S+) - " + _QUOTED + r" (\d{3})(?: .*)?"
)


def parse_uvicorn(text: str, router: Router) -> Parsed:
    m = _UVICORN.fullmatch(text)
    if m is None:
        raise ParseError("not a uvicorn access log line")
    when, client, request, status = m.groups()
    f: dict[str, Any] = {"status": int(status)}
    if when is not None:
        try:
            f["ts"] = parse_any(when.replace(",", ".").replace("/", "-", 2))
        except ValueError as exc:
            raise ParseError(f"bad timestamp {when!r}: {exc}") from None
    host = client
    if client.startswith("["):  # [::1]:54321
        host = client[1:].partition("]")[0]
    elif client.count(":") == 1:
        host = client.partition(":")[0]
    if is_ip(host):
        f["ip"] = host
    elif host != "-":
        f["source_address"] = host
    route, failed = _request(f, request, router)
    return route, failed, f
