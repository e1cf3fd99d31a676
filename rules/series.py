"""Rule types over a series of windows: the current window against those before it (spike,
anomaly). The anomaly detector of the registry's rhythm plugs in here.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import OrderedDict
from typing import Any, ClassVar

from contract.timestamps import iso_from_epoch
from rules.anomaly import Detector, Params, Reading
from rules.anomaly.explained import Explained
from rules.lifecycle import Lifecycle
from rules.model import (
    AnomalyRule,
    Condition,
    SpikeRule,
)
from rules.notify.values import Unit, shown
from rules.query import (
    NO_GROUP,
    Measurement,
    Window,
    actions,
    filters,
    group_aggs,
    group_buckets,
    ms,
    ranges,
    sources,
    time_range,
    totals,
)
from rules.ruletype import Bounded, S, for_group, metric_aggs, metric_unit, metric_value


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
        metric = {**self.metric(rule), **sources(rule)}
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
        return self.score(rule, [actions(b, b["doc_count"]) for b in buckets], buckets)

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
    """The rule's series (one point per ``bucket``, ``history`` of them) scored by the detector
    of :mod:`rules.anomaly`, replayed from the beginning of the history at each evaluation.

    Why replay rather than keep a model: the one search of the cycle brings the whole history
    (one date histogram per group, at most 65,000 buckets per search), so nothing is persisted,
    nothing is lost when a runner restarts or another takes over, and a backtest at the same
    moment sees exactly the same buckets and takes exactly the same transitions as the runner.
    The price is the replay, ``history / bucket`` points per group per evaluation (4,032 by
    default, about 0.1 s at the detector's speed), and no memory held between cycles.

    Buckets are aligned on the bucket length since the epoch, and the current point is the last
    complete bucket: two evaluations within the same bucket read the same value.

    A rule that sets ``buckets`` or ``z`` (an old rule file) keeps the old z-score of its window
    against the ``buckets`` windows before it."""

    name = "anomaly"
    lifecycle: ClassVar[Lifecycle] = Explained()

    def __init__(self) -> None:
        self._replays: OrderedDict[tuple[Any, ...], Reading] = OrderedDict()

    # -- old rule files: the z-score of the window against the windows before it --

    def history(self, rule: AnomalyRule) -> int:
        return rule.buckets if rule.buckets is not None else 12

    def score(self, rule: AnomalyRule, counts: list[int], buckets: list[dict[str, Any]]) -> float:
        current, history = counts[-1], counts[:-1]
        mean = sum(history) / len(history)
        # A flat baseline has no deviation: one event of difference counts as one deviation.
        deviation = max(math.sqrt(sum((c - mean) ** 2 for c in history) / len(history)), 1.0)
        return abs(current - mean) / deviation

    # -- the detector --

    def request(self, rule: AnomalyRule, window: Window) -> dict[str, Any]:
        if rule.legacy:
            return super().request(rule, window)
        first, end = span(rule, window)
        metric = {**metric_aggs(rule.aggregate), **sources(rule)}

        def series(field: str) -> dict[str, Any]:
            bounds = {"min": ms(first), "max": ms(end - rule.step)}
            return {"series": {"date_histogram": {"field": field, "fixed_interval": f"{ms(rule.step)}ms",
                                                  "min_doc_count": 0, "extended_bounds": bounds},
                               **({"aggs": metric} if metric else {})}}

        leaf = series(rule.time_field)
        if rule.time_fallback is not None:  # documents without the time field, by their fallback time
            leaf["fallback"] = {"filter": {"bool": {"must_not": [{"exists": {"field": rule.time_field}}]}},
                                "aggs": series(rule.time_fallback)}
        return {"size": 0, "query": {"bool": {"filter": filters(rule, Window(first, end))}},
                "aggs": group_aggs(rule, leaf)}

    def measure(self, rule: AnomalyRule, response: dict[str, Any], window: Window) -> list[Measurement]:
        if rule.legacy:
            return super().measure(rule, response, window)
        if "error" in response:
            raise RuntimeError(f"rule {rule.name}: {response['error']}")
        aggregations = response.get("aggregations", {})
        first, end = span(rule, window)
        if rule.group_by:
            found = list(group_buckets(rule, aggregations))
        else:
            found = [(NO_GROUP, aggregations)]
        out = []
        for group, bucket in found:
            buckets = bucket.get("series", {}).get("buckets", [])
            late = bucket.get("fallback", {}).get("series", {}).get("buckets", [])
            values = points(rule, merged(buckets, late), first)
            reading = self.replay(rule, values)
            out.append(Measurement(group, reading.score, (explanation(rule, reading, end),)))
        return out

    def replay(self, rule: AnomalyRule, values: tuple[float, ...]) -> Reading:
        """The detector's reading of the last point after all of ``values`` (remembered: the
        evaluations of one bucket, and a backtest stepping faster than the bucket, replay once)."""
        digest = hashlib.sha1(array("d", values).tobytes()).digest()  # the values, not a copy of them
        key = (rule.step, rule.learning, rule.score, rule.recovery, rule.direction, len(values), digest)
        if (known := self._replays.get(key)) is not None:
            self._replays.move_to_end(key)
            return known
        detector = Detector(params(rule))
        update = detector.update
        reading = Reading(0.0, 0.0, 0.0, 0.0, 0.0, True, 0)
        for value in values:
            reading = update(value)
        self._replays[key] = reading
        if len(self._replays) > REPLAYS:
            self._replays.popitem(last=False)
        return reading

    def recovery(self, rule: AnomalyRule) -> Condition | None:
        return None if rule.legacy else Condition(op="<", value=rule.recovery)

    def message(self, rule: AnomalyRule) -> str:
        if rule.legacy:
            return super().message(rule)
        return "{rule} is {state}: anomaly score {value} (bound {threshold})" + for_group(rule)

    def resolved_message(self, rule: AnomalyRule) -> str:
        if rule.legacy:
            return super().resolved_message(rule)
        return "{rule} resolved: anomaly score {value} (bound {threshold})" + for_group(rule)

    def shown_value(self, rule: AnomalyRule, value: float, event: dict[str, Any] | None) -> str:
        """The score, and what was observed against what was expected: "87: 1520 where 300 was
        expected (usual 250 to 420)"."""
        text = shown("score", value) if rule.legacy else f"{value:.0f}"
        if event is None or "observed" not in event:
            return text
        unit = metric_unit(rule.aggregate)
        if event.get("learning"):
            return f"{text}: learning ({shown(unit, event['observed'])} observed)"
        return (f"{text}: {shown(unit, event['observed'])} where {shown(unit, event['expected'])} was expected "
                f"(usual {shown(unit, event['lower'])} to {shown(unit, event['upper'])})")


REPLAYS = 1024  # readings remembered (by a digest of their whole input), per process: about 200 kB


def span(rule: AnomalyRule, window: Window) -> tuple[float, float]:
    """(start, end) of the history read for the window ending at ``window.end``: whole buckets on
    the bucket grid, the last of them complete."""
    end = math.floor(window.end / rule.step) * rule.step
    return end - rule.points * rule.step, end


def merged(primary: list[dict[str, Any]], fallback: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The buckets of documents placed by the time field and of those placed by the fallback
    time, as one: counts add up; a metric is the primary's where it has documents (documents
    without the time field are the rare exception), else the fallback's."""
    if not fallback:
        return primary
    out = {int(b["key"]): dict(b) for b in primary}
    for bucket in fallback:
        key = int(bucket["key"])
        if key not in out or not out[key].get("doc_count"):
            out[key] = dict(bucket)
        else:
            out[key]["doc_count"] = out[key].get("doc_count", 0) + bucket.get("doc_count", 0)
            if "sources" in out[key]:  # each source's count adds up too, so actions stay actions
                parts = {name: {"doc_count": part["doc_count"] + bucket.get("sources", {}).get("buckets", {})
                                .get(name, {}).get("doc_count", 0)}
                         for name, part in out[key]["sources"]["buckets"].items()}
                out[key]["sources"] = {"buckets": parts}
    return [out[key] for key in sorted(out)]


def points(rule: AnomalyRule, buckets: list[dict[str, Any]], first: float) -> tuple[float, ...]:
    """The series, one value per bucket of the history, oldest first, from the first bucket with
    a document (before it there was nothing to learn from: a new registry is learning, not
    silent). A bucket with no value (a metric of no event) repeats the one before."""
    values: list[float | None] = [None] * rule.points
    step = ms(rule.step)
    for bucket in buckets:
        index = (int(bucket["key"]) - ms(first)) // step
        if 0 <= index < rule.points:
            count = actions(bucket, int(bucket.get("doc_count", 0)))
            values[index] = metric_value(rule.aggregate, bucket, count) if count else (
                0.0 if rule.aggregate.function in ("count", "cardinality", "sum") else None)
    out: list[float] = []
    began = False
    for documents, value in zip(buckets_with_documents(buckets, first, step, rule.points), values, strict=True):
        began = began or documents
        if not began:
            continue
        if value is None or not math.isfinite(value):
            if out:
                out.append(out[-1])
            continue
        out.append(value)
    return tuple(out)


def buckets_with_documents(buckets: list[dict[str, Any]], first: float, step: int, count: int) -> list[bool]:
    """Per bucket of the history: whether any document fell in it."""
    found = [False] * count
    for bucket in buckets:
        index = (int(bucket["key"]) - ms(first)) // step
        if 0 <= index < count and bucket.get("doc_count", 0):
            found[index] = True
    return found


def params(rule: AnomalyRule) -> Params:
    return Params(step=rule.step, learning=rule.learning, threshold=rule.score, recovery=rule.recovery,
                  direction=rule.direction)


def explanation(rule: AnomalyRule, reading: Reading, end: float) -> dict[str, Any]:
    """What a notification and the alert carry: the last bucket's observed value, what was
    expected for it (typical for this time of day and week where the series repeats), the band
    of usual values, the score, and whether the detector is still learning."""
    return {"observed": reading.observed, "expected": reading.expected, "lower": reading.lower,
            "upper": reading.upper, "score": reading.score, "learning": reading.learning,
            "period_s": reading.period * rule.step, "bucket": {"start": iso_from_epoch(end - rule.step),
                                                                "end": iso_from_epoch(end)}}
