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
    if not isinstance(record, dict):
        raise ParseError(f"JSON line is a {type(record).__name__}, not an object", "invalid_json")
    return record


def is_ip(text: str) -> bool:
    known = _ip_cache.get(text)
    if known is None:
        try:
            ipaddress.ip_address(text)
            known = True
        except ValueError:
            known = False
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


def fill_request(f: dict[str, Any], method: str, target: str, router: Router,
                 body: str | None = None) -> tuple[Route, bool]:
    """Split the request target, route it, and pull model fields from query and body.

    Returns the route and whether the request failed (status >= 400).
    """
    path, sep, query = target.partition("?")
    f["method"] = method
    f["path"] = path
    if sep:
        f["query"] = query
    route, artifact = router.http(method, path)
    if artifact is not None:
        f["artifact_path"] = unquote(artifact)
    if route.kind != "access" or f.get("status", 0) >= 400:
        model: dict[str, Any] = {}
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
        if model:
            f["model"] = model
    status = f.get("status")
    return route, status is not None and status >= 400


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
