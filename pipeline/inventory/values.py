"""Text from the registry made fit for the event contract, as text from logs is.

A registry holds whatever its users typed: names, tags and params may carry control characters,
markup, right-to-left overrides, tens of kilobytes, or (through JSON's ``\\ud800`` escapes) lone
surrogates that cannot be encoded. Log lines reach the contract as valid Unicode (strict UTF-8,
orjson) and every value is escaped where it is shown (Kibana, the terminal, notifiers); the
inventory keeps the same promise: every string is valid Unicode and within a byte bound, so a
document is never refused by Elasticsearch (a keyword term beyond 32 KiB is) and a hostile name
is stored as typed, never interpreted. A value cut to its bound ends with ``…`` and a digest of the
whole, so two long names that share a prefix stay two names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

NAME_BYTES = 1024  # model names, aliases, tag and param keys: what a keyword field aggregates
VALUE_BYTES = 8192  # tag and param values, sources, descriptions
_MARK = "…"
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> str:
    """``value`` as a string of valid Unicode: a lone surrogate becomes U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def bounded(value: Any, max_bytes: int = NAME_BYTES) -> str:
    """Valid Unicode within ``max_bytes`` of UTF-8; a longer value is cut on a character boundary
    and marked with ``…`` and 8 hex digits of the whole value's hash."""
    text = valid_text(value)
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    tail = _MARK + hashlib.blake2b(data, digest_size=4).hexdigest()
    keep = max_bytes - len(tail.encode("utf-8"))
    return data[:keep].decode("utf-8", "ignore") + tail


def pairs(items: Any, value_bytes: int = VALUE_BYTES) -> dict[str, str]:
    """MLflow's ``[{"key": k, "value": v}]`` as ``{k: v}``, keys and values bounded; entries
    that are not such pairs are skipped. Keys sorted, so equal tags give equal documents."""
    found: dict[str, str] = {}
    if not isinstance(items, list):
        return found
    for item in items:
        if isinstance(item, dict) and item.get("key") is not None:
            value = item.get("value")
            found[bounded(item["key"])] = "" if value is None else bounded(value, value_bytes)
    return dict(sorted(found.items()))


def metric_values(items: Any) -> dict[str, float]:
    """``[{"key": k, "value": 0.9}]`` as ``{k: 0.9}``: finite numbers only (NaN and infinities
    are not JSON Elasticsearch accepts)."""
    found: dict[str, float] = {}
    if not isinstance(items, list):
        return found
    for item in items:
        if not isinstance(item, dict) or item.get("key") is None:
            continue
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if number == number and abs(number) != float("inf"):
            found[bounded(item["key"])] = number
    return dict(sorted(found.items()))


def millis(value: Any) -> int | None:
    """A timestamp in epoch milliseconds (MLflow's), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        value = int(value)
    if isinstance(value, int) and 0 <= value < 10**15:
        return value
    return None
