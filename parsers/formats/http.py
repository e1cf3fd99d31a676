"""What every HTTP access format shares: request lines, query strings, bodies, routing."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus

from parsers.errors import ParseError
from parsers.routes import Route, Router
from parsers.values import json_loads, seconds_as_ns

_ip_cache: dict[str, bool] = {}


def load_json_object(text: str) -> dict[str, Any]:
    """One JSON-lines record; ParseError unless it is an object."""
    try:
        record = json_loads(text)
    except ValueError as exc:
        raise ParseError(f"invalid JSON: {exc}", "invalid_json") from None
    if record.__class__ is not dict:
        raise ParseError(f"JSON line is a {type(record).__name__}, not an object", "invalid_json")
    return record


# The longest text is_ip keeps its answer for: an IPv6 address with a zone is well under it, and a
# hostile line's 50 KB "address" is answered, not kept.
IP_CACHE_TEXT = 64


def is_ip(text: str) -> bool:
    known = _ip_cache.get(text)
    if known is None:
        try:
            ipaddress.ip_address(text)
            known = True
        except ValueError:
            known = False
        if len(text) <= IP_CACHE_TEXT:
            if len(_ip_cache) > 4096:
                _ip_cache.clear()
            _ip_cache[text] = known
    return known


def seconds_to_ns(text: str | float | int | None) -> int | None:
    """nginx's ``$request_time`` (``0.126``) or ``$upstream_response_time`` (``0.1, 0.2``)."""
    if text is None or text == "-" or text == "":
        return None
    if text.__class__ is str and "," not in text and ":" not in text:
        return seconds_as_ns(float(text))
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    elif not isinstance(text, str):
        raise ParseError(f"wrong field type: a time is a {type(text).__name__}", "wrong_type")
    else:
        # Several upstreams tried: "0.001, 0.120" or "0.001 : 0.120"; the time is their sum.
        value = 0.0
        for part in text.replace(":", ",").split(","):
            part = part.strip()
            if part and part != "-":
                value += float(part)
    return seconds_as_ns(value)


def model_fields(pairs: list[tuple[str, str]] | dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """Map query or body keys to ``modelregistry.model.*`` through the route table's params."""
    model: dict[str, Any] = {}
    items = pairs.items() if isinstance(pairs, dict) else pairs
    for key, value in items:
        target = params.get(key)
        if target is None or value is None or isinstance(value, (dict, list)):
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if target == "tag_key":
            model.setdefault("tag", {})["key"] = text
        elif target == "tag_value":
            model.setdefault("tag", {})["value"] = text
        elif target not in model:
            model[target] = text
    return model


# What a request line gives, by (method, target, failed): the route, path, query, artifact path
# and model its target names. Registries answer the same few hundred requests all day (the same
# model fetched, the same health check), so they are worked out once; a bounded cache (cleared
# past REQUEST_CACHE_LIMIT entries, a method and target longer than REQUEST_CACHE_TARGET not kept): at most
# 4.6 MB per route table (measured: 4096 distinct 250-character targets), typically under 1 MB.
REQUEST_CACHE_LIMIT = 4096
REQUEST_CACHE_TARGET = 256
_Request = tuple[Route, str, str | None, str | None, dict[str, Any] | None]
# JSON records are read through a plan made once per shape (their keys in order); a record of
# more keys than any real log's (a hostile one) gets its plan made and not kept, so a few hundred
# such lines cannot keep their key tuples alive.
PLAN_SHAPE_KEPT = 64


def _copy_model(model: dict[str, Any]) -> dict[str, Any]:
    """A cached model as a document's own: its ``tag`` object too (documents never share them)."""
    copied = dict(model)
    if "tag" in copied:
        copied["tag"] = dict(copied["tag"])
    return copied


def fill_request(f: dict[str, Any], method: str, target: str, router: Router,
                 body: str | None = None) -> tuple[Route, bool]:
    """Split the request target, route it, and pull model fields from query and body.

    Returns the route and whether the request failed (status >= 400).
    """
    status = f.get("status")
    failed = status is not None and status >= 400
    if body and body[:1] == "{":  # the body names the model: not cached
        request = _request(method, target, router, failed, body)
    else:
        cache: dict[tuple[str, str, bool], _Request] = router.requests
        key = (method, target, failed)
        request = cache.get(key)  # type: ignore[assignment]
        if request is None:
            request = _request(method, target, router, failed, None)
            if len(method) + len(target) <= REQUEST_CACHE_TARGET:
                if len(cache) >= REQUEST_CACHE_LIMIT:
                    cache.clear()
                cache[key] = request
    route, path, query, artifact, model = request
    f["method"] = method
    f["path"] = path
    if query is not None:
        f["query"] = query
    if artifact is not None:
        f["artifact_path"] = artifact
    if model:
        f["model"] = _copy_model(model)
    return route, failed


def _request(method: str, target: str, router: Router, failed: bool, body: str | None) -> _Request:
    path, sep, query = target.partition("?")
    route, artifact = router.http(method, path)
    if artifact is not None:
        artifact = unquote(artifact)
    model: dict[str, Any] = {}
    if route.kind != "access" or failed:
        if body and body[:1] == "{":
            try:
                parsed = json_loads(body)  # a body with a lone surrogate names no model
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                model = model_fields(parsed, router.params)
        if query:
            from_query = model_fields(query_pairs(query, router.params), router.params)
            if model:
                for key, value in from_query.items():
                    model.setdefault(key, value)
            else:
                model = from_query
    return route, path, query if sep else None, artifact, model or None


def query_pairs(query: str, wanted: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``a=1&b=x%20y`` -> pairs; like ``parse_qsl`` without its cost for plain values.

    ``wanted``: keep only these keys (the others are not decoded at all).
    """
    pairs = []
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep or not value:
            continue
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if wanted is not None and key not in wanted:
            continue
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        pairs.append((key, value))
    return pairs


def split_request_line(request: str) -> tuple[str, str, str | None] | None:
    """``GET /path HTTP/1.1`` -> (method, target, "1.1"); None for junk (TLS probes, "-")."""
    parts = request.split(" ")
    if len(parts) == 3 and parts[2].startswith("HTTP/"):
        method, target, proto = parts
        version: str | None = proto[5:]
    elif len(parts) == 2:
        method, target = parts
        version = None
    else:
        return None
    if not method.isalpha() or not method.isupper() or not target.startswith("/"):
        return None
    return method, target, version


INVALID_REQUEST = Route(kind="access", action="invalid-request")
