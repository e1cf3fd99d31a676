"""Values that leave a parser fit the event contract's mapping, or the line is a dead-letter.

Elasticsearch maps every integer field of the contract as ``long``; a larger value (a size of
``99999999999999999999999`` in a hostile line) would fail the whole document at index time, or,
beyond 64 bits, fail to encode at all. Strings are valid Unicode by construction: text comes from
strict UTF-8 decoding, and JSON is read with orjson, which refuses lone surrogate escapes
(``"\\ud800"``) that the standard library's ``json`` lets through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from parsers.errors import ParseError

LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)


def long_value(value: int, name: str) -> int:
    """``value`` when it fits a ``long``; else the line is a dead-letter naming the field."""
    if not LONG_MIN <= value <= LONG_MAX:
        raise ParseError(f"value out of range: {name} does not fit a 64-bit integer", "out_of_range")
    return value


def digits(text: str, name: str) -> int:
    """A run of ASCII digits (as the format's pattern matched it) to a ``long``."""
    if len(text) > 19:  # LONG_MAX has 19 digits: longer runs are out of range (or zero-padded)
        text = text.lstrip("0") or "0"
    return long_value(int(text), name)


def status_code(value: Any, name: str = "status") -> int:
    """An HTTP status: an integer (or digits) from 100 to 999."""
    if value.__class__ is str and len(value) == 3 and "100" <= value <= "999" and value.isdigit() and value.isascii():
        return int(value)  # the common case, fast ("10:" sorts between "100" and "999" too)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not (
            value.isascii() and value.isdigit())):
        raise ParseError(f"wrong field type: {name}={str(value)[:40]!r} is not an integer", "wrong_type")
    code = int(value) if len(str(value)) <= 6 else 0
    if not 100 <= code <= 999:
        raise ParseError(f"value out of range: {name}={str(value)[:40]} is not an HTTP status", "out_of_range")
    return code


def seconds_as_ns(seconds: float, name: str = "duration") -> int | None:
    """Seconds (a float) to nanoseconds; None for a negative or NaN time, dead-letter if too large."""
    if math.isnan(seconds) or seconds < 0:
        return None
    if math.isinf(seconds) or seconds * 1e9 >= LONG_MAX:
        raise ParseError(f"value out of range: {name}={seconds!r} seconds", "out_of_range")
    return round(seconds * 1e9)


# JSON as orjson reads it: no lone surrogates, no NaN, integers beyond 64 bits as floats. orjson's
# own function, not a wrapper: every JSON line goes through it, and a Python frame around it cost
# 2 % of a record's time.
json_loads: Callable[[str | bytes], Any] = orjson.loads
