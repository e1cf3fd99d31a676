"""Timestamps of every format, to ISO 8601 in UTC (``2026-11-24T23:55:28.000Z``).

Access logs repeat the same second thousands of times, so the nginx/gunicorn form is parsed once
per distinct string and cached; that cache is the difference between 40k and 200k lines/s. JSON
logs repeat their ISO strings the same way (nginx's ``$time_iso8601``, an audit record's time):
those are cached too (profiled with py-spy: 13 % of ``regwatch parse -f nginx-json`` went to
parsing the same ISO string again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from contract.timestamps import to_iso

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CACHE_LIMIT = 4096
_KEPT_LENGTH = 64  # the longest time any format writes is well under it
_clf_cache: dict[str, str] = {}
_iso_cache: dict[str, str] = {}
_epoch_cache: dict[float, str] = {}  # numbers apart from strings: 1 and 1.0 are one key


def _remember(cache: dict[Any, str], key: Any, result: str) -> str:
    """Keep ``result`` for ``key`` (every cache here: cleared past ``_CACHE_LIMIT`` entries, and
    no text longer than ``_KEPT_LENGTH`` kept: a hostile line's time padded to 50 KB is read, not
    kept)."""
    if key.__class__ is str and len(key) > _KEPT_LENGTH:
        return result
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = result
    return result


def parse_clf(text: str) -> str:
    """``24/Nov/2026:23:55:28 +0100`` (nginx $time_local, gunicorn %(t)s) to UTC ISO."""
    cached = _clf_cache.get(text)
    if cached is not None:
        return cached
    # 24/Nov/2026:23:55:28 +0000
    day, month, rest = text.split("/", 2)
    year, hh, mm, rest = rest.split(":", 3)
    ss, zone = rest.split(" ", 1)
    sign = -1 if zone[0] == "-" else 1
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
    moment = datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss),
                      tzinfo=timezone(offset))
    return _remember(_clf_cache, text, to_iso(moment))


def parse_iso(text: str) -> str:
    """ISO 8601 with a zone (``2026-11-25T20:06:27+00:00``, ``...Z``); naive means UTC."""
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    return to_iso(datetime.fromisoformat(text))


def parse_epoch(value: float | int) -> str:
    """Seconds or milliseconds since the epoch (Databricks uses milliseconds)."""
    seconds = float(value)
    if seconds > 1e11:  # milliseconds: a seconds value this large is past the year 5000
        seconds /= 1000.0
    try:
        return to_iso(datetime.fromtimestamp(seconds, tz=UTC))
    except (OverflowError, OSError) as exc:
        raise ValueError(f"epoch {value!r} out of range") from exc


def parse_any(value: object) -> str:
    """A timestamp field of a JSON record: number (epoch) or ISO string.

    Strings and numbers are cached alike (a Databricks record's epoch milliseconds repeat as an
    ISO string does): numbers apart, as 1 and 1.0 are one key (and one instant)."""
    cls = value.__class__
    if not (cls is str or cls is int or cls is float):
        return _parse_any(value)
    cache: dict[Any, str] = _iso_cache if cls is str else _epoch_cache
    cached = cache.get(value)
    if cached is not None:
        return cached
    return _remember(cache, value, _parse_any(value))


def _parse_any(value: object) -> str:
    if isinstance(value, bool):
        raise ValueError("timestamp is a boolean")
    if isinstance(value, (int, float)):
        return parse_epoch(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.replace(".", "", 1).isdigit():
            return parse_epoch(float(stripped))
        if len(stripped) > 10 and stripped[2] == "/" and stripped[6] == "/":
            return parse_clf(stripped)
        return parse_iso(stripped.replace(" ", "T", 1) if stripped[10:11] == " " else stripped)
    raise ValueError(f"timestamp of type {type(value).__name__}")


_local_cache: dict[tuple[str, str], str] = {}


@cache
def zone_info(name: str) -> ZoneInfo:
    """An IANA zone by name (``Europe/Amsterdam``, ``UTC``); ValueError names an unknown one."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_local(text: str, zone: str) -> str:
    """A zone-less ``2026-11-25 20:06:27.123`` read as a time of ``zone`` (as Filebeat's
    ``timestamp`` processor's ``timezone``), to UTC ISO; cached like the other forms."""
    key = (text, zone)
    cached = _local_cache.get(key)
    if cached is not None:
        return cached
    moment = datetime.fromisoformat(text.replace(" ", "T", 1)).replace(tzinfo=zone_info(zone))
    return _remember(_local_cache, key, to_iso(moment))
