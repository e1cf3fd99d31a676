"""Rule types: what each one asks Elasticsearch and what it makes of the answer.

A rule type is a small class registered by the name rule files use in ``type:`` (as Vector
registers its components, or ElastAlert 2 its rule types). It builds the search of one window,
turns the response into measurements, and says when a value breaches and when it has recovered;
its ``lifecycle`` (:mod:`rules.lifecycle`) says what a measurement does to the rule's alerts. The
runner, the backtest, the dry run and the query validation all go through :data:`RULE_TYPES`:
adding a rule type is adding a class (the protocol is :class:`~rules.ruletype.RuleType`), typed by
the rule model it reads, and naming it here.
"""

from __future__ import annotations

from typing import Any

from rules.counts import Absence, Consecutive, Ratio, Threshold
from rules.model import Rule
from rules.occurrences import Change, Match, NewTerm
from rules.promotion import Regression
from rules.query import Measurement, Window
from rules.ruletype import RuleType
from rules.series import Anomaly, Spike
from rules.staleness import StaleUsage

RULE_TYPES: dict[str, RuleType[Any]] = {
    kind.name: kind() for kind in (Threshold, Ratio, Absence, Consecutive, Spike, Anomaly, Match, NewTerm, Change,
                                   Regression, StaleUsage)
}


def rule_type(rule: Rule) -> RuleType[Any]:
    return RULE_TYPES[rule.type]


def request(rule: Rule, window: Window) -> dict[str, Any]:
    """The search body of one rule for one window."""
    return rule_type(rule).request(rule, window)


def measure(rule: Rule, response: dict[str, Any], window: Window) -> list[Measurement]:
    """The measurements of one rule from its search response (an error in it is raised)."""
    if "error" in response:
        raise RuntimeError(f"rule {rule.name}: {response['error']}")
    return rule_type(rule).measure(rule, response, window)
