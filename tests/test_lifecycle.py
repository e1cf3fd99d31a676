"""The lifecycles, pure: what a rule's measurements do to its alerts, with no node and no runner.

The runner, the backtest, the dry run and the outside monitor all ask the rule type's lifecycle;
these tests pin each lifecycle's decisions, trial rows and readings whole."""

from __future__ import annotations

from rules.lifecycle import Decision, OnChange, PerEvent, Reading, Stateful, TrialRow
from rules.model import ChangeRule, MatchRule, ThresholdRule
from rules.query import Measurement
from rules.types import RULE_TYPES, rule_type

THRESHOLD = ThresholdRule(name="errors", type="threshold", group_by="model", notify=[],
                          condition={"op": ">", "value": 5}, recovery={"op": "<", "value": 2}, **{"for": 60})
MATCH = MatchRule(name="deletes", type="match", notify=[])
CHANGE = ChangeRule(name="champion", type="change", field="model.version", group_by="model", notify=[])


def _decide(rule, stored, measured, now):
    kind = rule_type(rule)
    return kind.lifecycle.decide(kind, rule, stored, measured, now)


def test_every_rule_type_has_a_lifecycle_and_no_mode() -> None:
    for kind in RULE_TYPES.values():
        assert isinstance(kind.lifecycle, (Stateful, PerEvent, OnChange))  # or a kind of one (anomaly's Explained)
        assert not hasattr(kind, "mode")


def test_a_stateful_alert_goes_pending_then_firing_then_resolved_and_a_quiet_group_is_not_written() -> None:
    rule = THRESHOLD
    first = _decide(rule, {}, [Measurement("a", 9.0), Measurement("b", 1.0)], 1000.0)
    # b is and stays ok, never seen: nothing to write
    assert first == [Decision("a", {"state": "pending", "since": 1000.0, "value": 9.0, "notified": 1000.0},
                              9.0, 1000.0, None, "pending")]
    stored = {"a": first[0].fields}
    assert _decide(rule, stored, [Measurement("a", 9.0)], 1030.0) == []  # pending, same value: nothing new
    firing = _decide(rule, stored, [Measurement("a", 8.0)], 1060.0)
    assert firing == [Decision("a", {"state": "firing", "since": 1000.0, "value": 8.0, "notified": 1060.0},
                               8.0, 1000.0, "firing", "firing")]
    stored = {"a": firing[0].fields}
    # 3 is no longer a breach but not yet the recovery bound (< 2): still firing, its value updated
    assert _decide(rule, stored, [Measurement("a", 3.0)], 1120.0) == [
        Decision("a", {"state": "firing", "since": 1000.0, "value": 3.0, "notified": 1060.0}, 3.0, 1000.0)]
    # the group went quiet: measured as zero, which meets the recovery bound
    assert _decide(rule, stored, [], 1180.0) == [
        Decision("a", {"state": "resolved", "since": 1000.0, "value": 0.0, "notified": 1180.0}, 0.0, 1000.0,
                 "resolved", "resolved")]


def test_a_stateful_trial_shows_every_group_and_readings_breach_by_the_condition() -> None:
    kind, rule = rule_type(THRESHOLD), THRESHOLD
    stored = {"a": {"state": "firing", "since": 900.0, "value": 9.0, "notified": 900.0}}
    assert kind.lifecycle.trial(kind, rule, stored, [Measurement("b", 7.0)], 1000.0) == [
        TrialRow("a", 0.0, "firing", "resolved", "resolved"), TrialRow("b", 7.0, "ok", "pending", None)]
    assert kind.lifecycle.readings(kind, rule, [Measurement("b", 7.0)]) == [Reading("b", 7.0, True)]
    assert kind.lifecycle.readings(kind, rule, []) == [Reading("*", 0.0, False)]


def test_an_event_fires_once_whatever_is_measured_again() -> None:
    event = {"_id": "e1", "user": "bob"}
    measured = [Measurement("e1", 1.0, (event,))]
    fired = _decide(MATCH, {}, measured, 500.0)
    assert fired == [Decision("e1", {"state": "fired", "since": 500.0, "value": 1.0}, 1.0, 500.0, "fired", "fired",
                              event=event, once=True)]
    assert _decide(MATCH, {"e1": fired[0].fields}, measured, 560.0) == []
    kind = rule_type(MATCH)
    assert kind.lifecycle.readings(kind, MATCH, measured) == [Reading("*", 1.0, True)]


def test_a_change_fires_when_the_value_differs_from_the_last_one_seen_and_the_first_is_a_baseline() -> None:
    def seen(value: str) -> list[Measurement]:
        return [Measurement("churn", 0.0, ({"value": value, "field": "model.version"},))]

    baseline = _decide(CHANGE, {}, seen("3"), 100.0)
    assert baseline == [Decision("churn", {"state": "changed", "since": 100.0, "value": 0.0, "last_value": "3"},
                                 0.0, 100.0)]
    stored = {"churn": baseline[0].fields}
    assert _decide(CHANGE, stored, seen("3"), 160.0) == []
    assert _decide(CHANGE, stored, seen("4"), 220.0) == [
        Decision("churn", {"state": "changed", "since": 220.0, "value": 0.0, "last_value": "4"}, 0.0, 220.0,
                 "changed", "changed", event={"_id": "", "model.version": "4", "previous": "3"})]
    kind = rule_type(CHANGE)
    assert kind.lifecycle.trial(kind, CHANGE, stored, seen("4"), 220.0) == [
        TrialRow("churn", 0.0, "last=3", "now=4", "changed")]
