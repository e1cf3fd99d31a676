"""Monitoring-plugin output, as the Monitoring Plugins development guidelines define it (the
contract Nagios, Icinga, Naemon and Zabbix's ``system.run`` callers read).

* One line: ``REGWATCH <STATUS> - <text> | <perfdata>``; exit 0 OK, 1 WARNING, 2 CRITICAL,
  3 UNKNOWN (the plugin's own trouble: bad options, no Elasticsearch, a crash).
* Thresholds are ranges ``[@]start:end``: ``10`` alerts outside 0..10, ``10:`` below 10, ``~:10``
  above 10, ``10:20`` outside 10..20, ``@10:20`` inside it.
* Perfdata: ``'label'=value[UOM];[warn];[crit];[min];[max]``, labels quoted when they hold spaces
  or quotes (a quote doubled), fields separated by one space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

PREFIX = "REGWATCH"


class Status(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Range:
    start: float
    end: float
    inside: bool  # @: alert inside the range, else outside it
    text: str

    @classmethod
    def parse(cls, text: str) -> Range:
        """A threshold range; ValueError naming the text when it is not one."""
        raw = text.strip()
        inside = raw.startswith("@")
        body = raw[1:] if inside else raw
        try:
            if ":" in body:
                low, _, high = body.partition(":")
                start = -math.inf if low == "~" else float(low or 0)
                end = float(high) if high else math.inf
            else:
                start, end = 0.0, float(body)
        except ValueError:
            raise ValueError(f"{text!r} is not a threshold range ([@]start:end, e.g. 10, 10:, ~:10, @10:20)") from None
        if start > end or math.isnan(start) or math.isnan(end):
            raise ValueError(f"{text!r}: start is above end")
        return cls(start, end, inside, raw)

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within


def status_of(value: float, warning: Range | None, critical: Range | None) -> Status:
    if critical is not None and critical.alerts(value):
        return Status.CRITICAL
    if warning is not None and warning.alerts(value):
        return Status.WARNING
    return Status.OK


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if math.isfinite(value) else "U"


def perfdata(label: str, value: float, uom: str = "", warning: Range | None = None,
             critical: Range | None = None, minimum: float | None = None, maximum: float | None = None) -> str:
    name = label if label.replace("_", "").replace("-", "").replace(".", "").isalnum() else \
        "'" + label.replace("'", "''").replace("=", "_") + "'"
    fields = [f"{_number(value)}{uom if math.isfinite(value) else ''}",
              warning.text if warning else "", critical.text if critical else "",
              _number(minimum) if minimum is not None else "", _number(maximum) if maximum is not None else ""]
    while fields and fields[-1] == "":
        fields.pop()
    return f"{name}=" + ";".join(fields)


def line(status: Status, text: str, perf: list[str] | None = None) -> str:
    """The one line. The text loses line breaks and ``|`` (which would start perfdata)."""
    clean = " ".join(text.replace("|", "/").split())
    out = f"{PREFIX} {status.name} - {clean}"
    return f"{out} | {' '.join(perf)}" if perf else out
