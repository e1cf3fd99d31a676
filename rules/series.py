"""Rule types over a series of windows: the current window against those before it (spike,
anomaly). The anomaly detector of the registry's rhythm plugs in here.
"""

from __future__ import annotations

import math
from typing import Any

from rules.model import (
    AnomalyRule,
    SpikeRule,
)
from rules.notify.values import Unit
from rules.query import (
    NO_GROUP,
    Measurement,
    Window,
    filters,
    group_aggs,
    ranges,
    time_range,
    totals,
)
from rules.ruletype import Bounded, S, metric_aggs, metric_value


class _Series(Bounded[S]):
    """Counts (or a metric) of the current window against the windows before it. Each window is a
    ``filters`` bucket of the same time selection as any rule's, so documents placed by their
    fallback time are counted like the others."""

    def history(self, rule: S) -> int:
        raise NotImplementedError

    def metric(self, rule: S) -> dict[str, Any]:
        """The sub-aggregation of each window's value (none: its count)."""
        return {}

    def request(self, rule: S, window: Window) -> dict[str, Any]:
        spans = ranges(window, self.history(rule) + 1)
        wide = Window(spans[0]["from"] / 1000, window.end)
        metric = self.metric(rule)
        series = {"series": {"filters": {"filters": [time_range(rule, s["from"] / 1000, s["to"] / 1000)
                                                     for s in spans]},
                             **({"aggs": metric} if metric else {})}}
        return {"size": 0, "query": {"bool": {"filter": filters(rule, wide)}}, "aggs": group_aggs(rule, series)}

    def measure(self, rule: S, response: dict[str, Any], window: Window) -> list[Measurement]:
        if not rule.group_by and "series" not in response.get("aggregations", {}):
            return [Measurement(NO_GROUP, 0.0)]
        return totals(rule, response, self.value)

    def value(self, rule: S, bucket: dict[str, Any], total: int) -> float:
        buckets = bucket["series"]["buckets"]
        return self.score(rule, [b["doc_count"] for b in buckets], buckets)

    def score(self, rule: S, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        raise NotImplementedError

    def unit(self, rule: S) -> Unit:
        return "score"  # a factor (spike) or a z-score (anomaly)




class Spike(_Series[SpikeRule]):
    name = "spike"

    def history(self, rule: SpikeRule) -> int:
        return 1

    def metric(self, rule: SpikeRule) -> dict[str, Any]:
        return metric_aggs(rule.aggregate)

    def score(self, rule: SpikeRule, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        if counts[-2] < rule.min_events:
            return 0.0  # no baseline to speak of: a first window is not a spike
        previous = metric_value(rule.aggregate, buckets[-2], counts[-2])
        current = metric_value(rule.aggregate, buckets[-1], counts[-1])
        if not previous or current is None:
            return 0.0  # a metric of nothing (no event had the field) is no spike either
        floor = 1.0 if rule.aggregate.function == "count" else abs(previous) * 1e-9
        up = current / previous
        down = previous / max(current, floor)
        return {"up": up, "down": down, "both": max(up, down)}[rule.direction]




class Anomaly(_Series[AnomalyRule]):
    name = "anomaly"

    def history(self, rule: AnomalyRule) -> int:
        return rule.buckets

    def score(self, rule: AnomalyRule, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        current, history = counts[-1], counts[:-1]
        mean = sum(history) / len(history)
        # A flat baseline has no deviation: one event of difference counts as one deviation.
        deviation = max(math.sqrt(sum((c - mean) ** 2 for c in history) / len(history)), 1.0)
        return abs(current - mean) / deviation
