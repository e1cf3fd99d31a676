"""nginx JSON access logs (``log_format ... escape=json``), keys named after nginx variables.

Sites name their keys differently: every field has a list of usual names, and an input's
``field_map`` (our name -> their key) takes precedence. ``request_body``, when logged, names the
model on writes (``{"name": "fraud-detector", "version": "2"}``).
"""

from __future__ import annotations

from typing import Any

from parsers.errors import ParseError
from parsers.formats.access import Parsed, _request
from parsers.formats.http import fill_request, is_ip, load_json_object, seconds_to_ns
from parsers.routes import Router
from parsers.timestamps import parse_any
from parsers.values import long_value, status_code

DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "ts": ("time_iso8601", "@timestamp", "timestamp", "time", "time_local", "msec"),
    "ip": ("remote_addr", "client_ip", "realip_remote_addr"),
    "user": ("remote_user",),
    "request": ("request",),
    "method": ("request_method", "method"),
    "uri": ("request_uri", "uri"),
    "args": ("args", "query_string"),
    "status": ("status",),
    "bytes": ("body_bytes_sent", "bytes_sent"),
    "request_time": ("request_time",),
    "upstream_time": ("upstream_response_time",),
    "ua": ("http_user_agent", "user_agent"),
    "referrer": ("http_referer", "referer"),
    "body": ("request_body",),
}


Plan = dict[str, tuple[str, ...]]
_PLAN_LIMIT = 256
_plans: dict[tuple[str, ...], Plan] = {}


def _plan(record: dict[str, Any]) -> Plan:
    """Of each field's usual names, those this record's shape has, in order of preference.

    The lines of one log_format share their keys: the plan is made once per shape (its keys in
    order) instead of trying every usual name of every field on every line. Records of odd
    shapes (hostile input) only cost a plan each, and the cache is bounded.
    """
    shape = tuple(record)
    plan = _plans.get(shape)
    if plan is None:
        plan = {name: tuple(key for key in keys if key in record) for name, keys in DEFAULT_KEYS.items()}
        if len(_plans) >= _PLAN_LIMIT:
            _plans.clear()
        _plans[shape] = plan
    return plan


def _get(record: dict[str, Any], name: str, field_map: dict[str, str], plan: Plan) -> Any:
    if field_map and name in field_map:
        return record.get(field_map[name])
    for key in plan[name]:
        value = record[key]
        if value is not None and value != "" and value != "-":
            return value
    return None


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParseError(f"wrong field type: {name} is a boolean", "wrong_type")
    if isinstance(value, int):
        if value < 0:
            raise ParseError(f"value out of range: {name}={value} is negative", "out_of_range")
        return long_value(value, name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return long_value(int(value) if len(value) <= 20 else 2**64, name)
    raise ParseError(f"wrong field type: {name}={value!r} is not an integer", "wrong_type")


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ParseError(f"wrong field type: {name} is a {type(value).__name__}", "wrong_type")


def parse_nginx_json(text: str, router: Router, ctx: Any) -> Parsed:
    field_map: dict[str, str] = ctx.field_map
    record = load_json_object(text)
    plan = _plan(record)
    when = _get(record, "ts", field_map, plan)
    if when is None:
        raise ParseError("no timestamp key (time_iso8601, time_local, ...)", "missing_field")
    try:
        f: dict[str, Any] = {"ts": parse_any(when)}
    except (ValueError, KeyError, IndexError, OverflowError, OSError) as exc:
        raise ParseError(f"bad timestamp {when!r}: {exc}", "bad_timestamp") from None
    status = _get(record, "status", field_map, plan)
    if status is None:
        raise ParseError("no status key", "missing_field")
    f["status"] = status_code(status)
    if (size := _int(_get(record, "bytes", field_map, plan), "body_bytes_sent")) is not None:
        f["bytes"] = size
    if (ip := _text(_get(record, "ip", field_map, plan), "remote_addr")) is not None:
        f["ip" if is_ip(ip) else "source_address"] = ip
    if user := _text(_get(record, "user", field_map, plan), "remote_user"):
        f["user"] = user
    if ua := _text(_get(record, "ua", field_map, plan), "http_user_agent"):
        f["ua"] = ua
    if referrer := _text(_get(record, "referrer", field_map, plan), "http_referer"):
        f["referrer"] = referrer
    timing = _get(record, "request_time", field_map, plan)
    if timing is None:
        timing = _get(record, "upstream_time", field_map, plan)
    try:
        duration = seconds_to_ns(timing if not isinstance(timing, str) else timing.strip())
    except (ValueError, TypeError):
        raise ParseError(f"wrong field type: request_time={timing!r}", "wrong_type") from None
    if duration is not None:
        f["duration_ns"] = duration
    body = _text(_get(record, "body", field_map, plan), "request_body")
    request = _text(_get(record, "request", field_map, plan), "request")
    if request is not None:
        route, failed = _request(f, request, router) if not body else _with_body(f, request, router, body)
        return route, failed, f
    method = _text(_get(record, "method", field_map, plan), "request_method")
    uri = _text(_get(record, "uri", field_map, plan), "request_uri")
    if method is None or uri is None:
        raise ParseError("no request (or request_method and request_uri) key", "missing_field")
    args = _text(_get(record, "args", field_map, plan), "args")
    target = uri if "?" in uri or not args else f"{uri}?{args}"
    route, failed = fill_request(f, method.upper(), target, router, body)
    return route, failed, f


def _with_body(f: dict[str, Any], request: str, router: Router, body: str):
    parts = request.split(" ")
    if len(parts) >= 2 and parts[0].isalpha() and parts[1].startswith("/"):
        if len(parts) == 3 and parts[2].startswith("HTTP/"):
            f["http_version"] = parts[2][5:]
        return fill_request(f, parts[0], parts[1], router, body)
    return _request(f, request, router)
