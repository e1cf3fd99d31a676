"""nginx JSON access logs (``log_format ... escape=json``), keys named after nginx variables.

Sites name their keys differently: every field has a list of usual names, and an input's
``field_map`` (our name -> their key) takes precedence. ``request_body``, when logged, names the
model on writes (``{"name": "fraud-detector", "version": "2"}``).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from parsers.errors import ParseError
from parsers.events import context_cache
from parsers.formats.access import Parsed, _request
from parsers.formats.http import (
    PLAN_SHAPE_KEPT,
    fill_request,
    is_ip,
    load_json_object,
    seconds_to_ns,
)
from parsers.routes import Router
from parsers.timestamps import parse_any
from parsers.values import LONG_MAX, long_value, status_code

if TYPE_CHECKING:
    from parsers.http_documents import HttpDocuments

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
        if len(shape) <= PLAN_SHAPE_KEPT:
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


# The fields in the order a line's values are read (an error names the first bad one)
_FIELDS = ("ts", "status", "bytes", "ip", "user", "ua", "referrer", "request_time", "upstream_time", "body",
           "request", "method", "uri", "args")
Steps = tuple[tuple[str | None, tuple[str, ...]], ...]


def _steps(record: dict[str, Any], field_map: dict[str, str], ctx: Any) -> Steps:
    """For each field (``_FIELDS``), the key the input's ``field_map`` names for it, else the usual
    names this record's shape has: made once per shape and input (``_plan``), kept on the context."""
    shape = tuple(record)
    steps_by_shape = ctx.__dict__.get("_json_steps")
    if steps_by_shape is None:
        steps_by_shape = context_cache(ctx, "_json_steps")
    steps = steps_by_shape.get(shape)
    if steps is None:
        plan = _plan(record)
        steps = tuple((field_map.get(name) if field_map else None, plan[name]) for name in _FIELDS)
        if len(shape) <= PLAN_SHAPE_KEPT:
            if len(steps_by_shape) >= _PLAN_LIMIT:
                steps_by_shape.clear()
            steps_by_shape[shape] = steps
    return steps


def _values(record: dict[str, Any], steps: Steps) -> list[Any]:
    """Each field's value (``_get`` for every field at once)."""
    values: list[Any] = []
    for mapped, keys in steps:
        if mapped is not None:
            values.append(record.get(mapped))
            continue
        for key in keys:
            value = record[key]
            if value is not None and value != "" and value != "-":
                values.append(value)
                break
        else:
            values.append(None)
    return values


# How the usual shape (at most one of each field's usual keys, nearly every log) is read, for an
# input without a ``field_map`` (its plan is then the shape's alone, so kept here for every input):
# an ``itemgetter`` of its keys in ``_FIELDS`` order and the Nones of the fields it lacks, when those
# are the last ones (one C call), else the keys with ``ABSENT`` for a lacking field (one ``map``);
# None for a shape with several keys for one field (read by ``_values``, which tries each).
ABSENT: Any = object()  # the key a field the shape lacks is read under: no record has it (not a string)
_Reader = tuple[Callable[[dict[str, Any]], tuple[Any, ...]] | None, tuple[None, ...], tuple[Any, ...]] | None
_readers: dict[tuple[str, ...], _Reader] = {}
_NO_READER: Any = object()
# What ``_values`` reads as no value: nginx writes "" (escape=json) or "-" for an empty variable
_EMPTY: dict[Any, None] = {"": None, "-": None}


def _reader(shape: tuple[str, ...], record: dict[str, Any]) -> _Reader:
    plan = _plan(record)
    steps = [plan[name] for name in _FIELDS]
    reader: _Reader = None
    if all(len(keys) <= 1 for keys in steps):
        names = tuple(keys[0] if keys else ABSENT for keys in steps)
        present = tuple(name for name in names if name is not ABSENT)
        lacking = len(names) - len(present)
        if len(present) >= 2 and names[len(present):] == (ABSENT,) * lacking:  # (one key: not a tuple)
            reader = (itemgetter(*present), (None,) * lacking, names)
        else:
            reader = (None, (), names)
    if len(shape) <= PLAN_SHAPE_KEPT:
        if len(_readers) >= _PLAN_LIMIT:
            _readers.clear()
        _readers[shape] = reader
    return reader


def _read(record: dict[str, Any], ctx: Any) -> tuple[Any, ...] | list[Any]:
    """``_values`` of the record, for the usual shape in C (its keys' values, then "" and "-" as
    None) instead of a loop a field. A value that is a JSON object or array (unhashable: no key of
    ``_EMPTY``) is read by ``_values`` as before."""
    if not ctx.field_map:
        shape = tuple(record)
        reader = _readers.get(shape, _NO_READER)
        if reader is _NO_READER:
            reader = _reader(shape, record)
        if reader is not None:
            getter, lacking, names = reader
            raw = getter(record) + lacking if getter is not None else tuple(map(record.get, names))
            try:
                return tuple(map(_EMPTY.get, raw, raw))
            except TypeError:
                pass
    return _values(record, _steps(record, ctx.field_map, ctx))


def parse_nginx_json(text: str, router: Router, ctx: Any, docs: HttpDocuments | None = None
                     ) -> Parsed | dict[str, Any]:
    """A line's fields (or, given ``docs``, its finished document when the line has the usual shape)."""
    record = load_json_object(text)
    (when, status, size, ip, user, ua, referrer, timing, upstream, body, request, method, uri,
     args) = _read(record, ctx)
    if when is None:
        raise ParseError("no timestamp key (time_iso8601, time_local, ...)", "missing_field")
    try:
        ts = parse_any(when)
    except (ValueError, KeyError, IndexError, OverflowError, OSError) as exc:
        raise ParseError(f"bad timestamp {when!r}: {exc}", "bad_timestamp") from None
    if status is None:
        raise ParseError("no status key", "missing_field")
    # (the usual values' checks inline: a number nginx logs unquoted, as status_code and _int see it)
    code = status if status.__class__ is int and 100 <= status <= 999 else status_code(status)
    if size is not None and not (size.__class__ is int and 0 <= size <= LONG_MAX):
        size = _int(size, "body_bytes_sent")  # (None or an int that fits: the usual value as it is)
    if ip is not None and ip.__class__ is not str:
        ip = _text(ip, "remote_addr")
    if user is not None and user.__class__ is not str:
        user = _text(user, "remote_user")
    if ua is not None and ua.__class__ is not str:
        ua = _text(ua, "http_user_agent")
    if referrer is not None and referrer.__class__ is not str:
        referrer = _text(referrer, "http_referer")
    if timing is None:
        timing = upstream
    duration: int | None
    if timing.__class__ is float and 0.0 <= timing < 9e9:  # seconds_to_ns's result, inline
        duration = round(timing * 1e9)
    else:
        try:
            duration = seconds_to_ns(timing if not isinstance(timing, str) else timing.strip())
        except (ValueError, TypeError):
            raise ParseError(f"wrong field type: request_time={timing!r}", "wrong_type") from None
    if body is not None and body.__class__ is not str:
        body = _text(body, "request_body")
    if request is not None and request.__class__ is not str:
        request = _text(request, "request")
    if docs is not None:
        if request is not None:
            if not body:
                if (split := docs.request_line(request)) is not None:
                    return docs.document(ts, split[0], split[1], split[2], code, size, ip, user, referrer or None, ua,
                                         duration, text)
            else:  # as _with_body reads it
                parts = request.split(" ")
                if len(parts) >= 2 and parts[0].isalpha() and parts[1].startswith("/"):
                    version = parts[2][5:] if len(parts) == 3 and parts[2].startswith("HTTP/") else None
                    return docs.document(ts, parts[0], parts[1], version, code, size, ip, user, referrer or None, ua,
                                         duration, text, body=body if body[:1] == "{" else None)
        elif (method.__class__ is str and uri.__class__ is str and (args is None or args.__class__ is str)
              and not (body and body[:1] == "{")):  # (a body that names no model is not read)
            target = uri if "?" in uri or not args else f"{uri}?{args}"
            return docs.document(ts, method.upper(), target, None, code, size, ip, user, referrer or None, ua,
                                 duration, text)
    f: dict[str, Any] = {"ts": ts, "status": code}
    if size is not None:
        f["bytes"] = size
    if ip is not None:
        f["ip" if is_ip(ip) else "source_address"] = ip
    if user:
        f["user"] = user
    if ua:
        f["ua"] = ua
    if referrer:
        f["referrer"] = referrer
    if duration is not None:
        f["duration_ns"] = duration
    if request is not None:
        route, failed = _request(f, request, router) if not body else _with_body(f, request, router, body)
        return route, failed, f
    method = _text(method, "request_method")
    uri = _text(uri, "request_uri")
    if method is None or uri is None:
        raise ParseError("no request (or request_method and request_uri) key", "missing_field")
    args = _text(args, "args")
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
