"""The anomaly rules' results on a real node: a runner cycle over indexed events writes, per
bucket, the actual value against the expected band and the score to
``logs-modelregistry.anomaly-<namespace>``, each bucket once whoever evaluates it and however often."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contract.ecs import ECS
from contract.timestamps import iso_from_epoch
from kibana.lens_query import bucket_values, lens_request
from kibana.objects import all_objects
from rules.anomaly import Detector, Reading
from rules.query import NO_GROUP, Window
from rules.results import Results, direction, result_id
from rules.runner import Runner
from rules.series import params
from rules.types import measure, request, rule_type
from support.rules import write_rules
from test_anomaly_es import BASE, RULE, SPIKE, index_traffic, traffic

STREAM = "logs-modelregistry.anomaly-{}"


def _stored(es, namespace: str) -> list[dict[str, Any]]:
    es.indices.refresh(index=STREAM.format(namespace))
    hits = es.search(index=STREAM.format(namespace), size=100, sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    out = []
    for hit in hits:
        document = hit["_source"]
        document["event"].pop("ingested", None)  # the node's clock, where its ingest pipeline runs
        out.append({"_id": hit["_id"], **document})
    return out


def _expected(rule, namespace: str, minute: int, counts: list[int]) -> dict[str, Any]:
    """The result of the bucket that ends at ``minute``, from a detector fed the counts before it."""
    detector = Detector(params(rule))
    reading = Reading(0.0, 0.0, 0.0, 0.0, 0.0, True, 0)
    for value in counts[:minute]:
        reading = detector.update(float(value))
    start, end = iso_from_epoch(BASE + (minute - 1) * 60), iso_from_epoch(BASE + minute * 60)
    explained = {"observed": reading.observed, "expected": reading.expected, "lower": reading.lower,
                 "upper": reading.upper, "score": reading.score, "learning": reading.learning}
    began = datetime.fromtimestamp(BASE + (minute - 1) * 60, UTC)
    return {
        "_id": result_id("odd-traffic", NO_GROUP, start),
        "@timestamp": start,
        "ecs": ECS,
        "message": f"odd-traffic: score {rule_type(rule).shown_value(rule, reading.score, explained)}",
        "data_stream": {"type": "logs", "dataset": "modelregistry.anomaly", "namespace": namespace},
        "event": {"kind": "metric", "dataset": "modelregistry.anomaly", "type": ["info"], "start": start, "end": end},
        "rule": {"id": "odd-traffic", "name": "odd-traffic", "ruleset": "regwatch"},
        "modelregistry": {"operation": "other", "anomaly": {
            "rule": "odd-traffic", "group": NO_GROUP, "bucket_span_s": 60.0, "actual": reading.observed,
            "expected": reading.expected, "lower": reading.lower, "upper": reading.upper, "score": reading.score,
            "threshold": 40.0, "learning": reading.learning,
            "direction": direction(reading.observed, reading.lower, reading.upper),
            "period_s": float(reading.period * 60), "typical": {"hour": began.hour, "weekday": began.isoweekday()},
        }},
    }


def _spike_evaluated(es, namespace: str, tmp_path) -> tuple[list, list[int], range]:
    """One runner's cycles over the minutes around the spike, on indexed traffic: the rules, the
    per-minute counts indexed and the minutes evaluated."""
    rules = write_rules(tmp_path, RULE.replace("notify: [hook]", "notify: []"))
    counts = traffic()
    index_traffic(es, namespace, counts)
    runner = Runner(es, rules, namespace)
    minutes = range(SPIKE - 1, SPIKE + 3)
    for minute in minutes:
        runner.cycle(now=BASE + minute * 60 + 5)
    return rules, counts, minutes


def test_a_cycle_writes_each_bucket_actual_against_the_expected_band_and_the_score(es, namespace, tmp_path) -> None:
    rules, counts, minutes = _spike_evaluated(es, namespace, tmp_path)
    stored = _stored(es, namespace)
    assert stored == [_expected(rules[0], namespace, minute, counts) for minute in minutes]
    spike = stored[2]["modelregistry"]["anomaly"]  # the bucket of minute SPIKE (complete at SPIKE + 1)
    assert spike["actual"] == 90 and spike["direction"] == "up" and spike["score"] >= 40
    assert spike["learning"] is False


def test_two_runners_and_a_window_evaluated_again_write_each_bucket_once(es, namespace, tmp_path) -> None:
    rules = write_rules(tmp_path, RULE.replace("notify: [hook]", "notify: []"))
    counts = traffic()
    index_traffic(es, namespace, counts)
    first, second = Runner(es, rules, namespace, runner_id="a"), Runner(es, rules, namespace, runner_id="b")
    minutes = range(SPIKE, SPIKE + 3)
    for minute in minutes:
        now = BASE + minute * 60 + 5
        first.cycle(now=now)
        second.cycle(now=now)
    # the same windows evaluated again (a runner restarted, a claim given back): written already
    again = Results(es, namespace)
    for minute in minutes:
        window = Window(BASE + (minute - 1) * 60 + 5, BASE + minute * 60 + 5)
        response = es.search(index=STREAM.format(namespace).replace("anomaly", "access"),
                             body=request(rules[0], window))
        again.add(rules[0], measure(rules[0], dict(response), window))
    assert again.flush() == 0
    assert _stored(es, namespace) == [_expected(rules[0], namespace, minute, counts) for minute in minutes]


def _panel(es, namespace: str, lens_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A panel's search, derived from its own Lens state, over this test's namespace."""
    objects = all_objects()
    views = {o["id"]: o for o in objects if o["type"] == "index-pattern"}
    obj = next(o for o in objects if o["type"] == "lens" and o["id"] == lens_id)
    request = lens_request(obj, views)
    assert request.index == "logs-modelregistry.anomaly-*"
    return obj, es.search(index=request.index[:-1] + namespace, **request.body)


def test_the_anomalies_dashboard_draws_the_actual_against_the_band_and_ranks_the_scores(
        es, namespace, tmp_path) -> None:
    """The Anomalies dashboard's panels, their requests derived from their Lens state, on the
    results a runner wrote: each minute's actual, expected and band as the detector said, the score
    per rule, and the highest score in the range."""
    rules, counts, minutes = _spike_evaluated(es, namespace, tmp_path)
    es.indices.refresh(index=STREAM.format(namespace))
    expected = [_expected(rules[0], namespace, minute, counts)["modelregistry"]["anomaly"] for minute in minutes]
    obj, answer = _panel(es, namespace, "regwatch-anomaly-band")
    assert bucket_values(obj, answer) == [
        ((iso_from_epoch(BASE + (minute - 1) * 60),),
         {"m0": e["actual"], "m1": e["expected"], "m2": e["lower"], "m3": e["upper"]})
        for minute, e in zip(minutes, expected, strict=True)]
    obj, answer = _panel(es, namespace, "regwatch-anomaly-score")
    assert bucket_values(obj, answer) == [(("odd-traffic", iso_from_epoch(BASE + (minute - 1) * 60)),
                                           {"m0": e["score"]}) for minute, e in zip(minutes, expected, strict=True)]
    obj, answer = _panel(es, namespace, "regwatch-anomaly-top")
    assert bucket_values(obj, answer) == [(("odd-traffic", NO_GROUP), {"m0": max(e["score"] for e in expected)})]


def test_evaluations_within_one_bucket_write_it_once_and_ask_nothing_more(es, namespace, tmp_path) -> None:
    """A rule evaluated every minute over 5-minute buckets reads the same last bucket five times:
    the first evaluation writes it, the next four send no request."""
    rules = write_rules(tmp_path, RULE.replace("notify: [hook]", "notify: []").replace("window: 60s", "window: 5m")
                        .replace("history: 8h", "history: 2d").replace("learning: 120", "learning: 24"))
    index_traffic(es, namespace, traffic())
    runner = Runner(es, rules, namespace)
    bulks: list[int] = []
    original = es.bulk

    def counted(**kwargs):
        bulks.append(sum(1 for op in kwargs["operations"] if "create" in op and "anomaly" in op["create"]["_index"]))
        return original(**kwargs)

    runner.results.client = type("Counted", (), {"bulk": staticmethod(counted)})()
    start = BASE + 300 * 60  # on the 5-minute grid
    for minute in range(5):
        runner.cycle(now=start + minute * 60 + 5)
    assert bulks == [1]
    stored = _stored(es, namespace)
    assert [d["@timestamp"] for d in stored] == [iso_from_epoch(start - 300)]
