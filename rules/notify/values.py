"""A measured value as a person reads it: counts as integers, ratios as percents, durations in
ms or s, scores with two decimals.

The payload keeps the raw number (``value``, ``threshold``) for machines; the message and the
text of Slack, Teams and email show it in the unit of the rule that measured it. The rule type
says which unit that is (:meth:`rules.types.RuleType.unit`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

# count: events, checks (an integer); ratio: a fraction shown as a percent; duration_ns: ECS
# event.duration (nanoseconds); score: a spike factor or an anomaly's z-score; number: any other metric.
Unit = Literal["count", "ratio", "duration_ns", "score", "number"]


def _trim(number: float, decimals: int) -> str:
    """``number`` rounded to ``decimals``, without trailing zeros: 5.0 -> "5", 2.35 -> "2.35"."""
    text = f"{number:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def shown(unit: Unit, value: float | None) -> str:
    """``value`` in ``unit``, for people: 8.0 -> "8", 0.40089 (ratio) -> "40.1 %", 2.35e9 ns ->
    "2.35 s", 3.456 (score) -> "3.46"; no value (an event rule has no bound) -> ""."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    if unit == "count":
        return str(round(value))
    if unit == "ratio":
        return f"{_trim(value * 100, 1)} %"
    if unit == "duration_ns":
        if abs(value) < 1e9:
            return f"{_trim(value / 1e6, 1 if abs(value) < 1e7 else 0)} ms"
        return f"{_trim(value / 1e9, 2)} s"
    if unit == "score":
        return f"{value:.2f}"
    return str(round(value)) if float(value).is_integer() else _trim(value, 2)


class Shown(str):
    """A value's text that still takes a number's format spec: ``{value}`` reads "40.1 %",
    ``{value:.3f}`` (a template written for the raw number) still gives "0.401"."""

    raw: float | None

    def __new__(cls, text: str, raw: float | None) -> Shown:
        made = super().__new__(cls, text)
        made.raw = raw
        return made

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "deEfFgGn%" and self.raw is not None:
            return format(self.raw, spec)
        return format(str(self), spec)


def message_value(unit: Unit, value: float | None) -> Any:
    """What a message template's ``{value}`` or ``{threshold}`` is given."""
    return Shown(shown(unit, value), value)
