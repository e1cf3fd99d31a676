"""The registry's meaning as rule logic (#30 item 4), pure: ``regression`` (a promotion or a new
version worse than what it replaces, by a run metric) and ``stale_usage`` (clients still pulling
a version some time after the alias moved on).

They read the inventory's documents (docs/inventory.md): change events (``alias-set``,
``model-version-created``) and each version's latest state (``modelregistry.inventory.metrics``);
and retrieval events named by ``pipeline/attribution.py``. No I/O here: the rule type that wires
them into the runner (``rules/types.py``) queries Elasticsearch and passes the documents in.

``regression`` compares as MLflow's ``MetricThreshold`` validates a candidate against a baseline
(mlflow.models.MetricThreshold): the new target is the candidate, the previous holder the
baseline. With ``greater_is_better``, the candidate must reach ``threshold`` (when given), and
``baseline + min_absolute_change`` and ``baseline + min_relative_change * |baseline|`` (when
given; a zero baseline: simply better); the opposite way when lower is better. Without
``min_absolute_change`` and ``min_relative_change`` the candidate must not be worse than the
baseline. A candidate that fails is a regression: it fires once per change (the finding's key is
the change event's id), never for a change that passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RegressionConfigError(ValueError):
    """A check that MetricThreshold would refuse too."""


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    greater_is_better: bool = True
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    def __post_init__(self) -> None:
        if not self.metric:
            raise RegressionConfigError("metric: the run metric to compare (accuracy, rmse, ...)")
        if self.min_absolute_change is not None and not self.min_absolute_change > 0:
            raise RegressionConfigError("min_absolute_change: a positive number")
        if self.min_relative_change is not None and not 0 <= self.min_relative_change <= 1:
            raise RegressionConfigError("min_relative_change: a number from 0 to 1")


@dataclass(frozen=True)
class Verdict:
    failed: bool
    reasons: tuple[str, ...] = ()
    candidate: float | None = None
    baseline: float | None = None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _short_of(value: float, bound: float, greater_is_better: bool) -> bool:
    """``value`` does not reach ``bound``; a value equal to it up to float rounding reaches it
    (0.9 + 0.05 is 0.9500000000000001: 0.95 passes, as it reads)."""
    if math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12):
        return False
    return value < bound if greater_is_better else value > bound


def evaluate(check: MetricCheck, candidate: Any, baseline: Any) -> Verdict:
    """Whether ``candidate`` fails ``check`` against ``baseline`` (None: not known). A candidate
    without the metric cannot be judged: not a failure (the finding would be a guess)."""
    new, old = _finite(candidate), _finite(baseline)
    if new is None:
        return Verdict(False, ("the new version has no such metric",), new, old)
    better = check.greater_is_better
    reasons = []
    if check.threshold is not None and (new < check.threshold if better else new > check.threshold):
        reasons.append(f"{check.metric} {new:g} is {'below' if better else 'above'} the threshold {check.threshold:g}")
    if old is not None:
        if check.min_absolute_change is None and check.min_relative_change is None:
            if new < old if better else new > old:
                reasons.append(f"{check.metric} {new:g} is worse than {old:g}")
        if check.min_absolute_change is not None:
            bound = old + check.min_absolute_change if better else old - check.min_absolute_change
            if _short_of(new, bound, better):
                reasons.append(f"{check.metric} {new:g} does not improve on {old:g} by {check.min_absolute_change:g}")
        if check.min_relative_change is not None:
            if old == 0:
                failed = new <= old if better else new >= old
            else:
                change = check.min_relative_change * abs(old)
                failed = _short_of(new, old + change if better else old - change, better)
            if failed:
                reasons.append(f"{check.metric} {new:g} does not improve on {old:g} by "
                               f"{check.min_relative_change:.0%}")
    return Verdict(bool(reasons), tuple(reasons), new, old)


@dataclass(frozen=True)
class Finding:
    key: str  # what fired, once: the change event's id (regression) or version and client (stale_usage)
    model: str
    version: str
    message: str
    at: str  # when (ISO 8601)
    details: dict[str, Any] = field(default_factory=dict)


def _model(doc: dict[str, Any]) -> dict[str, Any]:
    return ((doc.get("modelregistry") or {}).get("model")) or {}


MOVED, REGISTERED = "moved", "registered"  # the changes a regression rule judges


def regressions(changes: list[tuple[str, dict[str, Any]]], metrics: dict[tuple[str, str], dict[str, float]],
                check: MetricCheck, alias: str = "champion", judge: set[str] | None = None,
                kinds: tuple[str, ...] = (MOVED, REGISTERED)) -> list[Finding]:
    """Regressions among ``changes`` ((id, document) of the change stream, oldest first):
    ``alias`` moved to a version worse than the one it left (``moved``), or a version registered
    worse than the one ``alias`` then pointed to (``registered``). ``metrics``: (model, version)
    -> its run's metrics. ``judge``: the ids of the changes to judge (None: all); the others only
    say where the alias pointed. A model is a model of its registry (two registries may each
    have an ``m``): documents with ``modelregistry.registry`` are told apart by it."""
    holder: dict[tuple[str, str], str] = {}  # (registry, model) -> version alias points to, as the changes go
    found = []
    for change_id, doc in changes:
        action = (doc.get("event") or {}).get("action")
        model = _model(doc)
        name, version = model.get("name"), model.get("version")
        if not name:
            continue
        registry = str((doc.get("modelregistry") or {}).get("registry") or "")
        baseline_version = None
        if action == "alias-set" and model.get("alias") == alias:
            baseline_version = ((doc.get("modelregistry") or {}).get("change") or {}).get("previous")
            if version:
                holder[(registry, name)] = version
            if MOVED not in kinds:
                continue
        elif action == "alias-removed" and model.get("alias") == alias:
            holder.pop((registry, name), None)
            continue
        elif action == "model-version-created" and REGISTERED in kinds:
            baseline_version = holder.get((registry, name))
        else:
            continue
        if judge is not None and change_id not in judge:
            continue
        if not version or not baseline_version or baseline_version == version:
            continue
        verdict = evaluate(check, metrics.get((name, version), {}).get(check.metric),
                           metrics.get((name, baseline_version), {}).get(check.metric))
        if verdict.failed:
            moved = action == "alias-set"
            what = f"{alias} moved to" if moved else "registered"
            found.append(Finding(change_id, name, version,
                                 f"{name}: {what} version {version}, worse than version {baseline_version} "
                                 f"({alias}): {'; '.join(verdict.reasons)}", str(doc.get("@timestamp", "")),
                                 {"baseline_version": baseline_version, "candidate": verdict.candidate,
                                  "baseline": verdict.baseline, "metric": check.metric, "alias": alias,
                                  "change": MOVED if moved else REGISTERED, "registry": registry or None,
                                  "reasons": list(verdict.reasons)}))
    return found


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


Span = tuple[float, float]  # [from, until) epoch seconds


@dataclass(frozen=True)
class AliasTimeline:
    """Where an alias pointed, per model, from its change documents: the versions it left and
    when (until it came back), where it points now and since when."""

    left: dict[tuple[str, str], list[Span]]  # (model, version) -> when the alias left it, until it came back
    current: dict[str, tuple[str | None, float]]  # model -> (version now or None, since)

    def stale_from(self, model: str, version: str, at: float, grace_s: float) -> float | None:
        """When the alias left ``version`` if ``at`` is ``grace_s`` or more after that (and
        before it came back); None when a pull at ``at`` is no stale one."""
        for start, end in self.left.get((model, version), []):
            if start + grace_s <= at < end:
                return start
        return None


def alias_timeline(alias_changes: list[dict[str, Any]], alias: str = "champion") -> AliasTimeline:
    """The timeline of ``alias`` from its ``alias-set``/``alias-removed`` documents (any order)."""
    left: dict[tuple[str, str], list[Span]] = {}
    current: dict[str, tuple[str | None, float]] = {}
    for doc in sorted(alias_changes, key=lambda d: d.get("@timestamp", "")):
        model = _model(doc)
        if model.get("alias") != alias or not model.get("name"):
            continue
        at = _epoch(doc["@timestamp"])
        name = model["name"]
        new = ((doc.get("modelregistry") or {}).get("change") or {}).get("current")
        if (doc.get("event") or {}).get("action") == "alias-removed":
            new = None
        previous = current.get(name, (None, 0.0))[0]
        if previous is None:  # the first move seen: what it left, if the document says
            previous = ((doc.get("modelregistry") or {}).get("change") or {}).get("previous")
        if previous is not None and previous != new:
            left.setdefault((name, previous), []).append((at, math.inf))
        if new is not None:
            spans = left.get((name, new), [])
            if spans and spans[-1][1] == math.inf:
                spans[-1] = (spans[-1][0], at)
        current[name] = (new, at)
    return AliasTimeline(left, current)


def stale_usage(alias_changes: list[dict[str, Any]], downloads: list[dict[str, Any]], grace_s: float,
                alias: str = "champion", client_field: str = "source.ip") -> list[Finding]:
    """Clients that pulled a version ``grace_s`` or more after ``alias`` moved away from it (and
    before it came back): one finding per model, version and client, at its latest such pull.
    ``alias_changes``: the alias's change documents; ``downloads``: retrieval documents that name
    their model and version (attributed)."""
    timeline = alias_timeline(alias_changes, alias)
    latest: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
    for doc in downloads:
        model = _model(doc)
        name, version = model.get("name"), model.get("version")
        if not name or not version:
            continue
        at = _epoch(doc["@timestamp"])
        if timeline.stale_from(name, version, at, grace_s) is None:
            continue
        client = doc
        for part in client_field.split("."):
            client = client.get(part) if isinstance(client, dict) else None  # type: ignore[assignment]
        key = (name, version, str(client) if client is not None else "unknown")
        if key not in latest or at > latest[key][0]:
            latest[key] = (at, doc)
    return [Finding(f"{name}\0{version}\0{client}", name, version,
                    f"{name}: {client} still pulls version {version}, which {alias} no longer points to",
                    str(doc.get("@timestamp", "")), {"client": client})
            for (name, version, client), (_, doc) in sorted(latest.items())]


@dataclass(frozen=True)
class Puller:
    """Who pulled one version in a window: a client (or a user), how often, and when last."""

    name: str
    pulls: int  # retrievals naming the version: files, lookups
    last: float  # epoch seconds
    downloads: int = 0  # whole models pulled (its MLmodel fetched: once per pull, as regwatch downloads counts)


@dataclass(frozen=True)
class StaleUse:
    """One version still pulled after the alias left it: by whom, how often, since when."""

    model: str
    version: str
    current: str | None  # where the alias points now (None: removed)
    left_at: float  # when the alias left this version
    pulls: int
    clients: tuple[Puller, ...]
    users: tuple[Puller, ...]
    downloads: int = 0


def stale_uses(timeline: AliasTimeline, pulled: dict[tuple[str, str], tuple[list[Puller], list[Puller]]],
               grace_s: float) -> list[StaleUse]:
    """The versions ``pulled`` (``(model, version)`` -> its clients and its users in a window)
    by a client whose last pull there came ``grace_s`` or more after the alias left them. The
    pulls (and whole-model downloads) counted are the stale clients' in the window; the users
    named, those whose last pull was stale too."""
    out = []
    for (model, version), (clients, users) in sorted(pulled.items()):
        stale = [c for c in clients if timeline.stale_from(model, version, c.last, grace_s) is not None]
        if not stale:
            continue
        left_at = min(s for c in stale if (s := timeline.stale_from(model, version, c.last, grace_s)) is not None)
        who = [u for u in users if timeline.stale_from(model, version, u.last, grace_s) is not None]
        out.append(StaleUse(model, version, timeline.current.get(model, (None, 0.0))[0], left_at,
                            sum(c.pulls for c in stale),
                            tuple(sorted(stale, key=lambda c: (-c.pulls, c.name))),
                            tuple(sorted(who, key=lambda u: (-u.pulls, u.name))), sum(c.downloads for c in stale)))
    return out
