"""The anomaly rules' results, bucket by bucket, in a stream of their own
(``logs-modelregistry.anomaly-<namespace>``), as Elastic ML writes its results index: what was
observed (actual) against what was expected and the band of usual values, and the score.

Why a stream: an alert says when a rule crossed its bound; the results say, for every bucket,
why it did or did not, so Kibana can draw the actual against the band over time and ``regwatch
top`` can show which series are unusual now, before any alert.

A result's id is its rule, group and bucket start, written with ``create``: two runners side by
side, a window evaluated again, a replay, all write each bucket once (the first write stands, a
409 is fine). Results are best effort, as the alert history is: a failed write is logged, the
rule is not failed for it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import structlog
from elasticsearch import ApiError, Elasticsearch, TransportError

from contract import streams
from contract.ecs import ECS
from rules.model import AnomalyRule, Rule
from rules.query import NO_GROUP, Measurement
from rules.types import rule_type

log = structlog.get_logger(__name__)

KIND = "anomaly"
SERIES_REMEMBERED = 10_000  # rule and group pairs whose last bucket written is remembered


def result_id(rule: str, group: str, start: str) -> str:
    """One id per rule, group and bucket start: whoever writes it first, it is written once."""
    return hashlib.sha1(f"{rule}\x00{group}\x00{start}".encode()).hexdigest()


def direction(actual: float, lower: float, upper: float) -> str:
    """Where the actual value lies against the band: ``up`` above it, ``down`` below, ``none`` in it."""
    if actual > upper:
        return "up"
    if actual < lower:
        return "down"
    return "none"


def result(rule: AnomalyRule, group: str, explained: dict[str, Any], namespace: str) -> tuple[str, dict[str, Any]]:
    """The result document of one bucket of one group (its id, the document) from what the
    detector said of it (:func:`rules.series.explanation`). ``@timestamp`` is the bucket's start,
    as Elastic ML's ``timestamp``; ``typical`` is the bucket's hour and weekday (UTC), the slot of
    the daily and weekly rhythm the expectation was taken from."""
    start = explained["bucket"]["start"]
    began = datetime.fromisoformat(start).astimezone(UTC)
    dataset = streams.dataset(KIND)
    actual, lower, upper = float(explained["observed"]), float(explained["lower"]), float(explained["upper"])
    score = float(explained["score"])
    shown = rule_type(rule).shown_value(rule, score, explained)
    where = "" if group == NO_GROUP else f" for {group}"
    message = f"{rule.name}{where}: score {shown}"
    document: dict[str, Any] = {
        "@timestamp": start,
        "ecs": ECS,
        "message": message,
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": namespace},
        "event": {"kind": "metric", "dataset": dataset, "type": ["info"], "start": start,
                  "end": explained["bucket"]["end"]},
        "rule": {"id": rule.name, "name": rule.name, "ruleset": "regwatch"},
        "modelregistry": {"operation": "other", "anomaly": {
            "rule": rule.name, "group": group, "bucket_span_s": rule.step, "actual": actual,
            "expected": float(explained["expected"]), "lower": lower, "upper": upper, "score": score,
            "threshold": rule.score, "learning": bool(explained["learning"]),
            "direction": direction(actual, lower, upper), "period_s": float(explained.get("period_s", 0.0)),
            "typical": {"hour": began.hour, "weekday": began.isoweekday()},
        }},
    }
    return result_id(rule.name, group, start), document


def results(rule: Rule, measured: list[Measurement], namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """The result documents of one evaluation of ``rule``: one per group measured by the
    detector (none for another rule type, or an old rule file's z-score, which explains nothing)."""
    if not isinstance(rule, AnomalyRule) or rule.legacy:
        return []
    return [result(rule, m.group, m.events[0], namespace) for m in measured
            if m.events and "bucket" in m.events[0]]


class Results:
    """The results of a cycle, gathered while its rules are evaluated and written in one bulk
    request at its end.

    A rule evaluated more often than its bucket (``interval: 1m``, ``bucket: 5m``) reads the same
    last bucket several times: the bucket this process wrote last per rule and group is
    remembered, so those evaluations ask nothing more of Elasticsearch (what another runner wrote
    is refused by its id instead)."""

    def __init__(self, client: Elasticsearch, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._waiting: dict[str, tuple[dict[str, Any], str]] = {}
        self._last: dict[tuple[str, str], str] = {}  # (rule, group) -> the start of the bucket written last

    def add(self, rule: Rule, measured: list[Measurement]) -> None:
        for doc_id, document in results(rule, measured, self.namespace):
            if self._last.get(_series(document)) == document["@timestamp"]:
                continue  # written already by this process
            self._waiting.setdefault(doc_id, (document, rule.name))  # windows caught up: each bucket once

    def flush(self) -> int:
        """Write what was gathered, in one bulk request of ``create``: a bucket written already
        (by us at an earlier evaluation, or by a runner beside us) stays as it was. Returns the
        results written now."""
        if not self._waiting:
            return 0
        if len(self._last) > SERIES_REMEMBERED:
            self._last.clear()  # groups come and go: a forgotten one costs one refused write
        waiting, self._waiting = self._waiting, {}
        index = streams.data_stream_name(KIND, self.namespace)
        operations: list[dict[str, Any]] = []
        for doc_id, (document, _rule) in waiting.items():
            operations += [{"create": {"_index": index, "_id": doc_id}}, document]
        try:
            items = self.client.bulk(operations=operations)["items"]
        except (ApiError, TransportError) as exc:
            log.warning("anomaly_results_failed", rules=sorted({rule for _, rule in waiting.values()}),
                        error=str(exc)[:200])
            return 0
        written = 0
        for (document, rule), item in zip(waiting.values(), items, strict=True):
            outcome = next(iter(item.values()))
            status = outcome.get("status")
            if status in (200, 201, 409):
                written += status != 409
                series = _series(document)
                if document["@timestamp"] > self._last.get(series, ""):  # ISO UTC: ordered as text
                    self._last[series] = document["@timestamp"]
            else:
                log.warning("anomaly_results_failed", rule=rule, error=str(outcome.get("error"))[:200])
        return written


def _series(document: dict[str, Any]) -> tuple[str, str]:
    found = document["modelregistry"]["anomaly"]
    return found["rule"], found["group"]
