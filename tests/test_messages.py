"""Issue 27 item 6: what a notification says, in the unit of the rule that measured it.

"8.0 failed registry calls", "value 0.40089186286863654", "mlflow failed -2.0 health checks in a
row" on resolution, the firing text reused for the resolution, "term:ranker ... bound None".
The composer is given a rule and a value; no search is made (samples off).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from rules.compose import Composer
from rules.model import Rule
from rules.query import Window

RULE: TypeAdapter[Any] = TypeAdapter(Rule)
WINDOW = Window(1_000.0, 1_300.0)


def _rule(**fields: Any) -> Any:
    return RULE.validate_python({"name": "r", "notify": ["hook"], **fields})


def _say(rule: Any, value: float, state: str = "firing", group: str = "*",
         event: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    entry = Composer(None, "default", "state", None).entry(  # type: ignore[arg-type]
        rule, group, state, value, 900.0, 1_300.0, WINDOW, event=event, samples=False)
    payload: dict[str, Any] = dict(entry["payload"])
    return payload["message"], payload


def test_a_count_is_an_integer_and_the_payload_keeps_the_number() -> None:
    rule = _rule(type="threshold", kinds=["error"], condition={"op": ">=", "value": 5},
                 message="{rule}: {value} failed registry calls (bound {threshold})")
    message, payload = _say(rule, 8.0)
    assert message == "r: 8 failed registry calls (bound 5)"
    assert (payload["value"], payload["threshold"]) == (8.0, 5.0)
    assert payload["shown"] == {"group": "*", "value": "8", "threshold": "5"}


def test_a_ratio_is_a_percent_and_a_raw_format_spec_still_reads_the_number() -> None:
    rule = _rule(type="ratio", numerator="event.outcome:failure", condition={"op": ">", "value": 0.05},
                 message="{rule}: {value} of registry calls failed (bound {threshold})")
    assert _say(rule, 0.40089186286863654)[0] == "r: 40.1 % of registry calls failed (bound 5 %)"
    spec = rule.model_copy(update={"message": "{value:.3f} > {threshold:.2f}"})
    assert _say(spec, 0.40089186286863654)[0] == "0.401 > 0.05"


@pytest.mark.parametrize(("value", "said"), [(350_400_000.0, "350 ms"), (6_234_000_000.0, "6.23 s"),
                                             (2_500_000.0, "2.5 ms")])
def test_a_duration_in_nanoseconds_reads_in_ms_or_s(value: float, said: str) -> None:
    rule = _rule(type="threshold", kinds=["retrieval"], condition={"op": ">", "value": 5.0e9},
                 aggregate={"function": "percentile", "field": "event.duration", "percentile": 95})
    assert _say(rule, value)[0] == f"r is firing: {said} (bound 5 s)"


def test_scores_have_two_decimals_and_a_disk_ratio_is_a_percent() -> None:
    spike = _rule(type="spike", factor=3)
    assert _say(spike, 4.56789)[0] == "r is firing: 4.57 (bound 3.00)"
    disk = _rule(type="threshold", group_by="system.filesystem.mount_point", condition={"op": ">", "value": 0.9},
                 aggregate={"function": "max", "field": "system.filesystem.used.pct"})
    assert _say(disk, 0.9345, group="/data")[0] == "r is firing: 93.5 % (bound 90 %) for /data"


def test_an_absence_says_events_and_its_minimum() -> None:
    """The built-in registry-silent's resolution said "registry-silent: no registry traffic at all"."""
    rule = _rule(type="absence", minimum=5, group_by="host.name",
                 message="{rule}: no registry traffic at all in the last 15 minutes")
    assert _say(rule, 0.0, group="h1")[0] == "r: no registry traffic at all in the last 15 minutes"
    assert _say(rule, 12.0, "resolved", "h1")[0] == "r resolved: 12 events in the window for h1"
    plain = _rule(type="absence", minimum=5)
    assert _say(plain, 2.0)[0] == "r is firing: 2 events in the window, fewer than 5"


def test_a_consecutive_resolution_says_passed_in_a_row_not_a_negative_number() -> None:
    """The built-in registry-down's own message, as its rule file has it."""
    rule = _rule(type="consecutive", kinds=["availability"], group_by="modelregistry.probe.target", failures=3,
                 successes=2, message="{rule}: {group} failed {value} health checks in a row")
    assert _say(rule, 3.0, group="mlflow")[0] == "r: mlflow failed 3 health checks in a row"
    assert _say(rule, -2.0, "resolved", "mlflow")[0] == "r resolved: 2 checks passed in a row for mlflow"


def test_a_resolution_has_a_message_of_its_own() -> None:
    rule = _rule(type="ratio", numerator="event.outcome:failure", condition={"op": ">", "value": 0.05},
                 message="{rule}: {value} of registry calls failed",
                 resolved_message="{rule}: failures back to {value} for {group}", group_by="url.path")
    assert _say(rule, 0.2, group="/a")[0] == "r: 20 % of registry calls failed"
    assert _say(rule, 0.012, "resolved", "/a")[0] == "r: failures back to 1.2 % for /a"
    plain = rule.model_copy(update={"resolved_message": None})
    assert _say(plain, 0.012, "resolved", "/a")[0] == "r resolved: 1.2 % (bound 5 %) for /a"


def test_a_resolved_message_is_checked_when_the_rule_loads() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="resolved_message"):
        _rule(type="absence", resolved_message="{rule.__class__}")


def test_event_rules_name_the_term_or_event_and_no_bound() -> None:
    term = _rule(type="new_term", field="modelregistry.model.name")
    message, payload = _say(term, 1.0, "fired", "term:ranker",
                            {"_id": "term:ranker", "modelregistry.model.name": "ranker"})
    assert message == "r: new modelregistry.model.name ranker"
    assert payload["shown"] == {"group": "ranker", "value": "1", "threshold": None} and payload["threshold"] is None
    match = _rule(type="match", kinds=["registration"])
    event = {"_id": "x1", "_index": "i", "event": {"action": "registered-model-delete"},
             "modelregistry": {"model": {"name": "churn"}}, "user": {"name": "alice"}}
    assert _say(match, 1.0, "fired", "x1", event)[0] == "r: registered-model-delete churn alice"
    change = _rule(type="change", field="modelregistry.model.version", group_by="modelregistry.model.name")
    assert _say(change, 0.0, "changed", "churn", {"value": "7", "field": "modelregistry.model.version"})[0] == (
        "r: modelregistry.model.version of churn is now 7")


def test_the_builtin_rules_say_what_happened_firing_and_resolved() -> None:
    from pathlib import Path

    from rules.model import load_rules

    root = Path(__file__).resolve().parent.parent / "rules" / "builtin"
    builtin = {rule.name: rule for rule in load_rules([root, root / "audit"])}
    assert _say(builtin["registry-down"], -2.0, "resolved", "mlflow")[0] == \
        "registry-down: mlflow passed 2 health checks in a row"
    assert _say(builtin["registry-silent"], 12.0, "resolved")[0] == \
        "registry-silent: registry traffic is back (12 events in the window)"
    assert _say(builtin["audit-trail-silent"], 0.5, "resolved")[0] == \
        "audit-trail-silent: audit records are arriving again"
    deleted, payload = _say(builtin["registered-model-deleted"], 1.0, "fired", "e1",
                            event={"_id": "e1", "event": {"action": "registered-model-delete"},
                                   "modelregistry": {"model": {"name": "churn"}}, "user": {"name": "alice"}})
    assert deleted == f"registered-model-deleted: {payload['shown']['group']}" and "churn" in deleted
