"""The anomaly rule's lifecycle: the alert state machine of every bounded rule
(:class:`~rules.lifecycle.Stateful`), with what the detector saw attached to each decision.

The alert document keeps the explanation (observed, expected, band, score) and a notification
carries it as its ``event``, so that whoever is paged reads what was unusual and against what,
not only a score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rules.lifecycle import Bounds, Decision, Stateful, Stored
from rules.model import RuleBase
from rules.query import Measurement


@dataclass(frozen=True)
class Explained(Stateful):
    def decide(self, bounds: Bounds, rule: RuleBase, stored: Stored, measured: list[Measurement],
               now: float) -> list[Decision]:
        details = {m.group: m.events[0] for m in measured if m.events}
        out = []
        for decision in super().decide(bounds, rule, stored, measured, now):
            detail = details.get(decision.group)
            if detail is None:
                out.append(decision)
                continue
            out.append(replace(decision, fields={**decision.fields, "explanation": detail},
                               event=detail if decision.notify else None))
        return out
